"""Fault injection per replica: settings (flags or `/admin/faults`) and per-request decisions."""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field


class FaultSettings(BaseModel):
    """Faults of one replica; every field may be changed at run time."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    error_rate: float = Field(0.0, ge=0.0, le=1.0)
    error_status: int = Field(503, ge=400, le=599)
    added_latency: float = Field(0.0, ge=0.0)
    hang_rate: float = Field(0.0, ge=0.0, le=1.0)
    crash_after_tokens: int | None = Field(None, ge=0)
    unhealthy: bool = False


class FaultKind(Enum):
    """What a request should suffer."""

    NONE = "none"
    ERROR = "error"
    HANG = "hang"


@dataclass(frozen=True, slots=True)
class FaultPlan:
    """The faults chosen for one request."""

    kind: FaultKind
    added_latency: float
    crash_after_tokens: int | None
    error_status: int


class Faults:
    """Current settings plus a seeded RNG, so a fault sequence reproduces with the same seed."""

    def __init__(self, settings: FaultSettings, seed: int) -> None:
        self.settings = settings
        self._rng = random.Random(seed)

    def update(self, changes: dict[str, object]) -> FaultSettings:
        """Apply a partial update (validated as a whole) and return the new settings."""
        merged = {**self.settings.model_dump(), **changes}
        self.settings = FaultSettings.model_validate(merged)
        return self.settings

    def plan(self) -> FaultPlan:
        """Draw the faults for the next generation request."""
        s = self.settings
        kind = FaultKind.NONE
        if s.error_rate > 0 and self._rng.random() < s.error_rate:
            kind = FaultKind.ERROR
        elif s.hang_rate > 0 and self._rng.random() < s.hang_rate:
            kind = FaultKind.HANG
        return FaultPlan(kind, s.added_latency, s.crash_after_tokens, s.error_status)

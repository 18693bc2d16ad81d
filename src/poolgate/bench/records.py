"""The per-request measurement: timings, token counts and outcome of one benchmark request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RequestRecord:
    """One measured request; times are seconds, offsets are from the start of the measured phase."""

    index: int
    model: str
    prompt_len: int  # tokens the workload aimed at
    max_tokens: int
    scheduled: float  # when it was due (open loop) or picked up (closed loop)
    sent: float = 0.0  # when the request actually started
    finished: float = 0.0  # when the response ended or failed
    status: int = 0  # HTTP status; 0 when no response arrived
    error: str | None = None  # error class, e.g. "http_503", "timeout"; None on success
    error_detail: str | None = None
    ttft: float | None = None
    e2e: float | None = None
    itl: list[float] = field(default_factory=list)
    output_tokens: int | None = None
    prompt_tokens: int | None = None
    cached_tokens: int | None = None
    group: int | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def lateness(self) -> float:
        """How late the client started this request versus its schedule (scheduler lag)."""
        return max(0.0, self.sent - self.scheduled)

    @property
    def tpot(self) -> float | None:
        """Time per output token after the first: (e2e - ttft) / (output_tokens - 1)."""
        if self.ttft is None or self.e2e is None or not self.output_tokens or self.output_tokens < 2:
            return None
        return (self.e2e - self.ttft) / (self.output_tokens - 1)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema: docs/bench.md, `requests[]`)."""
        return {
            "index": self.index,
            "model": self.model,
            "group": self.group,
            "prompt_len": self.prompt_len,
            "max_tokens": self.max_tokens,
            "scheduled": self.scheduled,
            "sent": self.sent,
            "finished": self.finished,
            "status": self.status,
            "error": self.error,
            "error_detail": self.error_detail,
            "ttft": self.ttft,
            "tpot": self.tpot,
            "e2e": self.e2e,
            "itl": self.itl,
            "output_tokens": self.output_tokens,
            "prompt_tokens": self.prompt_tokens,
            "cached_tokens": self.cached_tokens,
        }

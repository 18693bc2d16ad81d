"""What an active health check probes and when (`healthCheck.active`, HealthCheckPolicy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True, slots=True)
class ActiveHealthCheckSpec:
    """Periodic probes of each endpoint (`healthCheck.active`)."""

    type: Literal["HTTP", "TCP", "GRPC"] = "HTTP"
    path: str | None = None
    method: str = "GET"
    expected_statuses: frozenset[int] = frozenset({200})
    interval: float = 3.0
    timeout: float = 1.0
    unhealthy_threshold: int = 3
    healthy_threshold: int = 1
    port: int | None = None  # probe this port instead of the endpoint's (HealthCheckPolicy)
    source: str = ""  # "Kind ns/name" of the policy that asked for the check (for /status)

"""A BackendTrafficPolicy as it applies to one route rule, in the policy layers' own types.

`config.policies` fills Envoy Gateway's defaults in while loading; the data plane builds its
runtime objects (breaker, retry policy, outlier detector, rate limiter) straight from these.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from poolgate.datalayer.health_spec import ActiveHealthCheckSpec
from poolgate.traffic.circuit_breaker import BreakerLimits
from poolgate.traffic.outlier import OutlierSpec
from poolgate.traffic.rate_limit import RateLimitRule
from poolgate.traffic.retry import RetrySpec


@dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    """`healthCheck`: either half may be absent."""

    active: ActiveHealthCheckSpec | None = None
    passive: OutlierSpec | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """A BackendTrafficPolicy as it applies to one route rule (times in seconds)."""

    namespace: str
    name: str
    circuit_breaker: BreakerLimits | None = None
    retry: RetrySpec | None = None
    request_timeout: float | None = None
    rate_limits: tuple[RateLimitRule, ...] = field(default=())
    health_check: HealthCheckSpec | None = None
    connect_timeout: float | None = None
    connection_idle_timeout: float | None = None

    @property
    def outlier(self) -> OutlierSpec | None:
        """Passive health checking (outlier detection), when configured."""
        return self.health_check.passive if self.health_check is not None else None

"""Resolved BackendTrafficPolicy settings, with Envoy Gateway's defaults filled in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

# Envoy Gateway's retry defaults when `retry` is present but a field is not
# (internal/xds/translator: connect-failure,refused-stream,unavailable,cancelled,
# retriable-status-codes with 503; Envoy's backoff base 25 ms, max 10x base).
DEFAULT_RETRY_TRIGGERS = frozenset(
    {"connect-failure", "refused-stream", "unavailable", "cancelled", "retriable-status-codes"}
)
DEFAULT_RETRY_STATUS_CODES = frozenset({503})
DEFAULT_BACKOFF_BASE = 0.025


@dataclass(frozen=True, slots=True)
class CircuitBreakerSpec:
    """Envoy cluster thresholds, counted per backendRef (Backend.key), per gateway process."""

    max_connections: int = 1024
    max_pending_requests: int = 1024
    max_parallel_requests: int = 1024
    max_parallel_retries: int = 1024
    max_requests_per_connection: int | None = None
    per_endpoint_max_connections: int | None = None


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """When and how often to retry before the first response byte reaches the client."""

    num_retries: int = 2
    triggers: frozenset[str] = DEFAULT_RETRY_TRIGGERS
    http_status_codes: frozenset[int] = DEFAULT_RETRY_STATUS_CODES
    per_retry_timeout: float | None = None
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float = DEFAULT_BACKOFF_BASE * 10


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """A local token bucket: `requests` per `unit_seconds`, per gateway process."""

    requests: int
    unit_seconds: float


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


@dataclass(frozen=True, slots=True)
class PassiveHealthCheckSpec:
    """Outlier detection from live traffic (`healthCheck.passive`)."""

    consecutive_5xx: int = 5
    consecutive_gateway_errors: int = 0
    consecutive_local_origin_failures: int = 5
    split_external_local_origin_errors: bool = False
    interval: float = 3.0
    base_ejection_time: float = 30.0
    max_ejection_percent: int = 10


@dataclass(frozen=True, slots=True)
class HealthCheckSpec:
    """`healthCheck`: either half may be absent."""

    active: ActiveHealthCheckSpec | None = None
    passive: PassiveHealthCheckSpec | None = None


@dataclass(frozen=True, slots=True)
class TrafficPolicy:
    """A BackendTrafficPolicy as it applies to one route rule."""

    namespace: str
    name: str
    circuit_breaker: CircuitBreakerSpec | None = None
    retry: RetrySpec | None = None
    request_timeout: float | None = None
    rate_limits: tuple[RateLimitRule, ...] = field(default=())
    health_check: HealthCheckSpec | None = None
    connect_timeout: float | None = None
    connection_idle_timeout: float | None = None


BalancingMode = Literal["CUSTOM_METRICS", "IN_FLIGHT"]


@dataclass(frozen=True, slots=True)
class BackendPolicySpec:
    """A GCPBackendPolicy as it applies to one pool (imported or local).

    `mode` None balances as a single-cluster pool (no region preference, no cap). With
    `CUSTOM_METRICS`, `max_utilization` (0..1) is the target of the metric `metric` (the
    `gke.named_metrics.<exportName>` name) read from the model server's `source_metric`; with
    `IN_FLIGHT`, `max_in_flight` caps the gateway's requests in flight per endpoint. `dry_run`
    computes and reports the decision without steering. `timeout` is `timeoutSec` in seconds.
    """

    namespace: str
    name: str
    mode: BalancingMode | None = None
    metric: str | None = None
    source_metric: str | None = None
    max_utilization: float = 0.8
    max_in_flight: int | None = None
    dry_run: bool = False
    timeout: float | None = None
    traffic_duration: str | None = None

    @property
    def key(self) -> str:
        """`namespace/name` of the GCPBackendPolicy."""
        return f"{self.namespace}/{self.name}"

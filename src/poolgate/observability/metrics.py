"""The gateway's own Prometheus metrics (served on the admin listener)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

# Latency buckets that resolve both sub-millisecond gateway errors and minute-long generations.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
)


class GatewayMetrics:
    """All gateway series in one registry; label children are cached so the hot path stays cheap."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "poolgate_requests", "Requests answered, by route, model and status.",
            ["route", "model", "status"], registry=r,
        )
        self.duration = Histogram(
            "poolgate_request_duration_seconds",
            "Time from request arrival to the last response byte.", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.ttfb = Histogram(
            "poolgate_time_to_first_byte_seconds",
            "Time from request arrival to the upstream response headers.", ["route"],
            buckets=_LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge(
            "poolgate_requests_in_flight", "Requests being served, by route.", ["route"], registry=r,
        )
        self.overflows = Counter(
            "poolgate_circuit_breaker_overflows",
            "Requests rejected by a circuit breaker (Envoy flag UO), by backend and limit.",
            ["backend", "limit"], registry=r,
        )
        self.upstream_errors = Counter(
            "poolgate_upstream_errors", "Failed upstream attempts, by backend and reason.",
            ["backend", "reason"], registry=r,
        )
        self.retries = Counter(
            "poolgate_upstream_retries", "Upstream attempts that were retries, by backend.",
            ["backend"], registry=r,
        )
        self.shed = Counter(
            "poolgate_requests_shed", "Requests rejected by admission control, by pool and reason.",
            ["pool", "reason"], registry=r,
        )
        self.reloads = Counter(
            "poolgate_config_reloads", "Configuration reloads, by result.", ["result"], registry=r,
        )
        self.endpoints_ready = Gauge(
            "poolgate_pool_endpoints", "Endpoints per pool in the current configuration.",
            ["pool"], registry=r,
        )
        self._req_children: dict[tuple[str, str, str], Counter] = {}
        self._route_children: dict[str, tuple[Histogram, Histogram, Gauge]] = {}

    def route_series(self, route: str) -> tuple[Histogram, Histogram, Gauge]:
        """(duration, ttfb, in_flight) children for a route, cached."""
        children = self._route_children.get(route)
        if children is None:
            children = (
                self.duration.labels(route), self.ttfb.labels(route), self.in_flight.labels(route),
            )
            self._route_children[route] = children
        return children

    def count_request(self, route: str, model: str, status: int) -> None:
        key = (route, model, str(status))
        child = self._req_children.get(key)
        if child is None:
            child = self.requests.labels(*key)
            self._req_children[key] = child
        child.inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

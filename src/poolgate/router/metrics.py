"""The router's Prometheus metrics, in a registry of its own (served on /metrics)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)


class RouterMetrics:
    """Every metric the router exports; one instance per process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.in_flight = Gauge("poolgate_router_requests_in_flight",
                               "/infer requests being processed now.", registry=r)
        self.in_flight_peak = Gauge("poolgate_router_requests_in_flight_peak",
                                    "Highest number of /infer requests processed at once since start.",
                                    registry=r)
        self.queued = Gauge("poolgate_router_requests_queued",
                            "/infer requests waiting for a local or global slot.", registry=r)
        self.requests = Counter("poolgate_router_requests",
                                "/infer requests answered, by HTTP status code.", ["code"], registry=r)
        self.rejected = Counter("poolgate_router_requests_rejected",
                                "/infer requests refused by admission, by reason.", ["reason"],
                                registry=r)
        self.duration = Histogram("poolgate_router_request_duration_seconds",
                                  "Time from arrival to response of admitted /infer requests.",
                                  buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_wait = Histogram("poolgate_router_queue_wait_seconds",
                                    "Time admitted /infer requests waited for their slots.",
                                    buckets=_LATENCY_BUCKETS, registry=r)
        self.kv_failures = Counter("poolgate_router_kv_failures",
                                   "Failed calls to the KV store (Redis), by operation.", ["op"],
                                   registry=r)
        self.kv_fail_open = Counter("poolgate_router_kv_fail_open",
                                    "Requests admitted without a global lease because the KV store "
                                    "was unreachable (KV_FAILURE_MODE=open).", registry=r)
        self.kv_leases_held = Gauge("poolgate_router_kv_leases_held",
                                    "Global concurrency leases this replica holds now.", registry=r)
        self.kv_leases_lost = Counter("poolgate_router_kv_leases_lost",
                                      "Held leases found expired at renewal (e.g. after a KV outage "
                                      "longer than KV_LEASE_MS).", registry=r)
        self.backend_healthy = Gauge("poolgate_router_backend_healthy",
                                     "1 when the backend passed its last health check (forwarding).",
                                     registry=r)

"""The gateway's Prometheus metrics (served on the admin listener): its own `poolgate_*` series
and the ecosystem's (`inference.py`, `pools.py`, `scheduling.py`; docs/metrics.md).

The series every request touches (count, duration, time to first byte, in flight) are plain
Python numbers rendered when /metrics is read: prometheus_client's Counter, Gauge and Histogram
take a lock per update, which on the overhead benchmark was ~5 % of the gateway's CPU. The
gateway's event loop is their only writer, so no lock is needed. The rare series (overflows,
retries, reloads...) stay prometheus_client objects.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from poolgate.observability.histogram import Histogram
from poolgate.observability.inference import InferenceMetrics
from poolgate.observability.pools import PoolCollector
from poolgate.observability.scheduling import SchedulerTimings

# Latency buckets that resolve both sub-millisecond gateway errors and minute-long generations.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0,
)


class RouteSeries:
    """The per-route series the request path updates."""

    __slots__ = ("duration", "in_flight", "ttfb")

    def __init__(self) -> None:
        self.duration = Histogram(_LATENCY_BUCKETS)
        self.ttfb = Histogram(_LATENCY_BUCKETS)
        self.in_flight = 0


class GatewayMetrics:
    """All gateway series in one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # (route, model, status) -> requests answered; route -> its series.
        self._requests: dict[tuple[str, str, int], int] = {}
        self._routes: dict[str, RouteSeries] = {}
        r.register(_RequestCollector(self._requests, self._routes))
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
        # The Inference Extension's and llm-d's names.
        self.inference = InferenceMetrics()
        r.register(self.inference.collector())
        self.pools = PoolCollector()
        r.register(self.pools)
        self.scheduling = SchedulerTimings()
        r.register(self.scheduling.collector())

    def route_series(self, route: str) -> RouteSeries:
        """The series of a route (created on first use)."""
        series = self._routes.get(route)
        if series is None:
            series = self._routes[route] = RouteSeries()
        return series

    def count_request(self, route: str, model: str, status: int) -> None:
        key = (route, model, status)
        self._requests[key] = self._requests.get(key, 0) + 1

    def exposition(self) -> tuple[bytes, str]:
        """The text exposition and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _RequestCollector(Collector):
    """Renders the request path's plain-number series at scrape time."""

    def __init__(self, requests: dict[tuple[str, str, int], int],
                 routes: dict[str, RouteSeries]) -> None:
        self._requests = requests
        self._routes = routes

    def describe(self) -> list[Metric]:
        return list(self._families())

    def collect(self) -> Iterator[Metric]:
        return self._families(samples=True)

    def _families(self, samples: bool = False) -> Iterator[Metric]:
        requests = CounterMetricFamily("poolgate_requests",
                                       "Requests answered, by route, model and status.",
                                       labels=["route", "model", "status"])
        duration = HistogramMetricFamily("poolgate_request_duration_seconds",
                                         "Time from request arrival to the last response byte.",
                                         labels=["route"])
        ttfb = HistogramMetricFamily("poolgate_time_to_first_byte_seconds",
                                     "Time from request arrival to the upstream response headers.",
                                     labels=["route"])
        in_flight = GaugeMetricFamily("poolgate_requests_in_flight",
                                      "Requests being served, by route.", labels=["route"])
        if samples:
            for (route, model, status), count in list(self._requests.items()):
                requests.add_metric([route, model, str(status)], count)
            for route, series in list(self._routes.items()):
                duration.add_metric([route], series.duration.cumulative(), series.duration.sum)
                ttfb.add_metric([route], series.ttfb.cumulative(), series.ttfb.sum)
                in_flight.add_metric([route], series.in_flight)
        yield from (requests, duration, ttfb, in_flight)

"""The gateway's request series: plain numbers on the request path, Prometheus text when read."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from poolgate.observability.metrics import GatewayMetrics


def _samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, _ = metrics.exposition()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def test_request_counts_by_route_model_and_status() -> None:
    m = GatewayMetrics()
    for status in (200, 200, 503):
        m.count_request("default/r", "llama", status)
    m.count_request("-", "-", 404)
    got = _samples(m)
    key = "poolgate_requests_total"
    assert got[(key, (("model", "llama"), ("route", "default/r"), ("status", "200")))] == 2
    assert got[(key, (("model", "llama"), ("route", "default/r"), ("status", "503")))] == 1
    assert got[(key, (("model", "-"), ("route", "-"), ("status", "404")))] == 1


def test_latency_histograms_are_cumulative_with_inclusive_bounds() -> None:
    m = GatewayMetrics()
    series = m.route_series("default/r")
    for seconds in (0.0004, 0.001, 0.003, 700.0):
        series.duration.observe(seconds)
    series.ttfb.observe(0.02)
    series.in_flight += 2
    got = _samples(m)
    route = (("route", "default/r"),)

    def bucket(name: str, le: str) -> float:
        return got[(f"{name}_bucket", tuple(sorted((*route, ("le", le)))))]

    name = "poolgate_request_duration_seconds"
    assert bucket(name, "0.0005") == 1
    assert bucket(name, "0.001") == 2  # 0.001 is counted in the bucket le="0.001"
    assert bucket(name, "0.0025") == 2
    assert bucket(name, "0.005") == 3
    assert bucket(name, "600.0") == 3
    assert bucket(name, "+Inf") == 4
    assert got[(f"{name}_count", route)] == 4
    assert abs(got[(f"{name}_sum", route)] - 700.0044) < 1e-9
    assert bucket("poolgate_time_to_first_byte_seconds", "0.01") == 0
    assert bucket("poolgate_time_to_first_byte_seconds", "0.025") == 1
    assert got[("poolgate_requests_in_flight", route)] == 2


def test_the_series_are_declared_before_any_request() -> None:
    body, _ = GatewayMetrics().exposition()
    for name in ("poolgate_requests_total", "poolgate_request_duration_seconds",
                 "poolgate_time_to_first_byte_seconds", "poolgate_requests_in_flight"):
        assert f"# TYPE {name} ".encode() in body

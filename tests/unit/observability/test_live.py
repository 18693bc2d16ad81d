"""The per-second ring of recent traffic behind the status page's charts (`observability/live.py`)."""

from __future__ import annotations

import pytest

from poolgate.observability.live import TTFT_BUCKETS, LiveWindow, _quantile


def test_requests_errors_and_throttles_are_counted_per_second() -> None:
    live = LiveWindow(10)
    live.record(100.2, 200, 0.05, "a")
    live.record(100.9, 503, None, None)
    live.record(101.5, 429, None, None)
    live.record(103.0, 200, None, "b")
    s = live.series(103.4, 5)
    assert s.end == 103
    assert s.requests == [0, 2, 1, 0, 1]  # seconds 99 to 103
    assert s.errors == [0, 1, 0, 0, 0]
    assert s.throttled == [0, 0, 1, 0, 0]
    assert [v is not None for v in s.ttft_p50] == [False, True, False, False, False]


def test_seconds_older_than_the_window_are_forgotten_when_the_ring_comes_round() -> None:
    live = LiveWindow(4)
    live.record(10.0, 200, None, "a")
    live.record(14.5, 200, None, "a")  # same slot as second 10, four seconds later
    assert live.series(14.5).requests == [0, 0, 0, 1]
    assert live.summary(14.5, 60).requests == 1
    assert live.served(14.5, 60) == {"a": 1}
    # A read long after the last request sees an empty window.
    assert live.series(100.0).requests == [0, 0, 0, 0]


def test_the_summary_gives_rates_over_its_span_and_ttft_percentiles() -> None:
    live = LiveWindow(300)
    for i in range(100):
        live.record(200.0 + i * 0.1, 500 if i < 5 else 200, 0.01 * (i + 1), None)
    s = live.summary(210.0, 60)
    assert (s.seconds, s.requests) == (60, 100)
    assert s.rate == pytest.approx(100 / 60)
    assert s.error_rate == pytest.approx(5 / 60)
    assert s.throttled_rate == 0
    assert s.ttft_mean == pytest.approx(0.505)
    assert s.ttft_p50 == pytest.approx(0.5, rel=0.1)  # bucket-interpolated
    assert s.ttft_p95 == pytest.approx(0.95, rel=0.1)


def test_an_idle_window_has_no_ttft_and_zero_rates() -> None:
    s = LiveWindow(60).summary(1000.0, 10)
    assert (s.requests, s.rate, s.ttft_p50, s.ttft_p95, s.ttft_mean) == (0, 0.0, None, None, None)


def test_served_counts_requests_per_endpoint_over_the_last_seconds() -> None:
    live = LiveWindow(300)
    live.record(30.0, 200, None, "a")
    live.record(100.0, 200, None, "a")
    live.record(100.0, 200, None, "b")
    live.record(100.5, 502, None, "b")
    assert live.served(100.9, 60) == {"a": 1, "b": 2}
    assert live.served(100.9, 120) == {"a": 2, "b": 2}


@pytest.mark.parametrize(("buckets", "q", "expected"), [
    pytest.param({0: 4}, 0.5, TTFT_BUCKETS[0] / 2, id="inside-the-first-bucket"),
    pytest.param({2: 1, 3: 1}, 1.0, TTFT_BUCKETS[3], id="top-of-the-last-used-bucket"),
    pytest.param({len(TTFT_BUCKETS): 3}, 0.95, TTFT_BUCKETS[-1], id="overflow-reports-its-bound"),
])
def test_quantiles_interpolate_inside_a_bucket(buckets: dict[int, int], q: float,
                                              expected: float) -> None:
    counts = [0] * (len(TTFT_BUCKETS) + 1)
    for i, n in buckets.items():
        counts[i] = n
    assert _quantile(counts, sum(counts), q) == pytest.approx(expected)


def test_a_window_is_at_least_one_second_long() -> None:
    with pytest.raises(ValueError, match="at least one second"):
        LiveWindow(0)

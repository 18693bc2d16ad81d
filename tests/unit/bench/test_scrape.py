from __future__ import annotations

import pytest

from poolgate.bench.scrape import RUNNING, WAITING, QueueStats, ScrapeRound, parse_gauges

from ._fixtures import FIXTURES


def test_parse_gauges_on_captured_vllm_metrics() -> None:
    text = (FIXTURES / "metrics_during_load_0.txt").read_text()
    # num_requests_waiting_by_reason shares the prefix but is a different metric.
    assert parse_gauges(text, (WAITING, RUNNING)) == {WAITING: 29.0, RUNNING: 11.0}


def test_parse_gauges_sums_series_and_skips_junk() -> None:
    text = (
        "# HELP x\n"
        'vllm:num_requests_waiting{model_name="a"} 2\n'
        'vllm:num_requests_waiting{model_name="b",x="}"} 3.5 1700000000\n'
        "vllm:num_requests_waiting_by_reason 9\n"
        "vllm:num_requests_running NaNx\n"
    )
    assert parse_gauges(text, (WAITING, RUNNING)) == {WAITING: 5.5}


def rounds(*values: tuple[float | None, ...]) -> list[ScrapeRound]:
    return [ScrapeRound(float(i), v, tuple(0.0 for _ in v)) for i, v in enumerate(values)]


def test_queue_stats_find_the_worst_imbalance() -> None:
    stats = QueueStats.of(["u1", "u2", "u3"], rounds((1, 1, 1), (6, 0, 0), (0, 0, 0), (2, None, 2)))
    assert stats.max_waiting == 6
    assert stats.worst_max_to_mean == pytest.approx(3.0)
    assert stats.rounds_above(2.0) == 1
    assert stats.rounds_above(2.0, floor=6) == 0
    assert stats.per_endpoint_max == (6, 1, 2)
    assert stats.per_endpoint_mean == pytest.approx((2.25, 1 / 3, 0.75))
    doc = stats.to_dict()
    assert doc["rounds_above_2x_mean"] == 1
    assert doc["rounds"][3] == {"t": 3.0, "waiting": [2, None, 2], "running": [0.0, 0.0, 0.0]}


def test_queue_stats_without_data() -> None:
    stats = QueueStats.of(["u"], rounds((None,)))
    assert (stats.mean_waiting, stats.max_waiting, stats.worst_max_to_mean) == (None, None, None)
    assert stats.per_endpoint_max == (None,)

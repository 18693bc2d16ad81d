"""Rows from a BenchResult, and sections through JSON and back."""

from __future__ import annotations

import dataclasses
import json

import pytest

from benchmarks.suite.model import RunRow, Section, median_row
from poolgate.bench import BenchConfig, LoadConfig, Target, WorkloadConfig
from poolgate.bench.cpu import CpuUsage
from poolgate.bench.records import RequestRecord
from poolgate.bench.result import BenchResult
from poolgate.bench.scrape import QueueStats, ScrapeRound
from tests.benchmarks.suite._rows import row, section


def _record(i: int, ttft: float, cached: int) -> RequestRecord:
    return RequestRecord(index=i, model="m", prompt_len=100, max_tokens=4, scheduled=0.0,
                         sent=0.0, finished=1.0, status=200, ttft=ttft, e2e=1.0,
                         itl=[0.1, 0.1, 0.1], output_tokens=4, prompt_tokens=100,
                         cached_tokens=cached)


def test_row_of_result_takes_percentiles_cpu_and_queue() -> None:
    records = [_record(i, ttft=0.1 * (i + 1), cached=50) for i in range(10)]
    running = (1.0, 1.0, 1.0, 1.0)
    queue = QueueStats.of(("a", "b", "c", "d"), [
        ScrapeRound(0.0, (0.0, 0.0, 0.0, 0.0), running),
        ScrapeRound(0.5, (0.0, 0.0, 0.0, 8.0), running),  # 8 > 2 x mean 2, and > floor 2
        ScrapeRound(1.0, (0.0, 0.0, 0.0, 1.0), running),  # 1 > 2 x 0.25, excused by the floor
    ])
    result = BenchResult(
        target=Target("gw", "http://127.0.0.1:1"),
        config=BenchConfig(workload=WorkloadConfig(model="m"),
                           load=LoadConfig(rate=1.0, requests=10)),
        records=records, duration=10.0, started_at="t",
        cpu=CpuUsage(pid=1, children=True, cpu_seconds=0.002, requests=10), queue=queue,
    )
    r = RunRow.of("poolgate default", "poolgate", result, "python -m poolgate serve")
    assert r.completed == 10 and r.errors == {}
    assert r.ttft_p50 is not None and abs(r.ttft_p50 - 0.55) < 1e-9
    assert r.prefix_cache_hit_rate == 0.5
    assert r.cpu_us_per_request is not None and abs(r.cpu_us_per_request - 200.0) < 1e-9
    assert r.queue_rounds == 3
    assert r.queue_rounds_above_2x == 2
    assert r.queue_rounds_above_2x_floor == 1
    assert r.command == "python -m poolgate serve"


def test_section_round_trips_through_json() -> None:
    sec = section("routing", [row("poolgate default", errors={"http_503": 2}, ttft_p90=0.3)],
                  notes=["n"], extra={"sim_cpu_us_per_request": {"x": 1.0}}, plot="routing.png")
    again = Section.from_dict(json.loads(json.dumps(sec.to_dict())))
    assert again == sec
    assert again.row("poolgate default") is not None
    assert again.row("nope") is None


def test_row_from_dict_ignores_unknown_fields() -> None:
    data = row("x").__class__.from_dict({**vars_of(row("x")), "future_field": 1})
    assert data == row("x")


def vars_of(r: RunRow) -> dict[str, object]:
    return {name: getattr(r, name) for name in r.__slots__}


def test_median_row_takes_medians_and_sums_counts() -> None:
    rounds = [
        row("poolgate", e2e_p50=0.020, cpu_us_per_request=230.0),
        row("poolgate", e2e_p50=0.010, cpu_us_per_request=180.0),
        row("poolgate", e2e_p50=0.030, cpu_us_per_request=None),
    ]
    rounds[1] = dataclasses.replace(rounds[1], errors={"503": 2}, completed=rounds[1].completed - 2)
    m = median_row(rounds)
    assert m.name == "poolgate"
    assert m.e2e_p50 == pytest.approx(0.020)
    assert m.cpu_us_per_request == pytest.approx(205.0)  # the median of the rounds that have it
    assert m.requests == sum(r.requests for r in rounds)
    assert m.completed == m.requests - 2 and m.errors == {"503": 2}
    assert median_row(rounds[:1]) is rounds[0]
    with pytest.raises(ValueError):
        median_row([])

"""Issue targets: PASS, MISS and n/a from rows."""

from __future__ import annotations

import pytest

from benchmarks.suite.checks import (
    DIRECT,
    GATEWAY,
    added,
    baseline_row,
    c1_row,
    floor_row,
    overhead_checks,
    peer_checks,
    pick_checks,
    pinned_row,
    profile_row,
    routing_checks,
)
from tests.benchmarks.suite._rows import row, section


def test_overhead_pass_and_miss() -> None:
    sec = section("overhead", [
        row(DIRECT, "direct", e2e_p50=0.0100),
        row(GATEWAY, e2e_p50=0.0105, cpu_us_per_request=320.0),
    ])
    latency, cpu = overhead_checks(sec)
    assert latency.passed is True and latency.measured == "0.50 ms"
    assert cpu.passed is False and cpu.verdict == "MISS" and cpu.measured == "320 µs"


def test_overhead_added_latency_over_limit_misses() -> None:
    sec = section("overhead", [row(DIRECT, "direct", e2e_p50=0.010),
                               row(GATEWAY, e2e_p50=0.0125, cpu_us_per_request=200.0)])
    latency, cpu = overhead_checks(sec)
    assert latency.passed is False
    assert cpu.passed is True


def test_overhead_without_gateway_row_is_not_applicable() -> None:
    checks = overhead_checks(section("overhead", [row(DIRECT, "direct", e2e_p50=0.01)]))
    assert [c.verdict for c in checks] == ["n/a", "n/a"]


def test_overhead_reports_the_pinned_pair_when_measured() -> None:
    sec = section("overhead", [
        row(DIRECT, "direct", e2e_p50=0.010),
        row(GATEWAY, e2e_p50=0.020, cpu_us_per_request=200.0),
        row(pinned_row(DIRECT), "direct", e2e_p50=0.030),
        row(pinned_row(GATEWAY), e2e_p50=0.0304, cpu_us_per_request=190.0),
    ])
    latency, pinned, cpu = overhead_checks(sec)
    assert latency.passed is False and latency.measured == "10.00 ms"
    assert pinned.passed is True and pinned.measured == "0.40 ms"
    assert "own CPU" in pinned.what
    assert cpu.passed is True


@pytest.mark.parametrize(("name", "baseline"), [
    pytest.param("poolgate", DIRECT, id="loaded"),
    pytest.param("poolgate (c=1)", "direct (c=1)", id="unloaded"),
    pytest.param("vllm-router round_robin (pinned)", "direct (pinned)", id="pinned"),
])
def test_baseline_row(name: str, baseline: str) -> None:
    assert baseline_row(name) == baseline


def test_added_handles_missing() -> None:
    assert added(None, 1.0) is None
    assert added(2.0, None) is None
    assert added(0.5, 0.25) == pytest.approx(0.25)


def _routing(default_ttft: float, default_tput: float, above: int) -> list[str]:
    sec = section("routing", [
        row(profile_row("default"), ttft_p90=default_ttft, output_throughput=default_tput,
            queue_rounds=100, queue_rounds_above_2x=above + 3, queue_rounds_above_2x_floor=above,
            queue_worst_max_to_mean=2.5),
        row(profile_row("round-robin"), ttft_p90=1.0, output_throughput=1000.0, queue_rounds=100),
    ])
    return [c.verdict for c in routing_checks(sec)]


def test_routing_all_pass() -> None:
    assert _routing(0.2, 1500.0, 0) == ["PASS", "PASS", "PASS"]


def test_routing_misses_each_target() -> None:
    assert _routing(0.21, 1499.0, 1) == ["MISS", "MISS", "MISS"]


def test_routing_without_round_robin_is_not_applicable() -> None:
    sec = section("routing", [row(profile_row("default"), ttft_p90=0.1)])
    assert [c.verdict for c in routing_checks(sec)] == ["n/a", "n/a", "n/a"]


def test_pick_check_reads_the_default_profile_at_64() -> None:
    ok = section("pick", [], extra={"us_per_pick": {"default": {"8": 40.0, "64": 99.5}}})
    slow = section("pick", [], extra={"us_per_pick": {"default": {"64": 140.0}}})
    none = section("pick", [], extra={"us_per_pick": {}})
    assert pick_checks(ok)[0].verdict == "PASS"
    assert pick_checks(slow)[0].verdict == "MISS"
    assert pick_checks(none)[0].verdict == "n/a"


def test_pick_checks_cover_the_compiled_build_when_measured() -> None:
    both = section("pick", [], extra={"us_per_pick": {
        "default": {"64": 140.0}, "prefix-only": {"64": 20.0},
        "default (mypyc)": {"64": 60.0}, "prefix-only (mypyc)": {"64": 10.0}}})
    checks = pick_checks(both)
    assert [(c.what, c.measured, c.verdict) for c in checks] == [
        ("pick cost at 64 endpoints (default profile, warm index)", "140 µs", "MISS"),
        ("pick cost at 64 endpoints (default profile (mypyc), warm index)", "60.0 µs", "PASS")]


def test_peer_checks_compare_the_same_runs() -> None:
    over = section("peers-overhead", [
        row("direct", kind="direct", e2e_p50=0.0150),
        row("poolgate", e2e_p50=0.0152, cpu_us_per_request=230.0),
        row("vllm-router round_robin", kind="peer", e2e_p50=0.0240, cpu_us_per_request=160.0),
        row(pinned_row("direct"), kind="direct", e2e_p50=0.0300),
        row(pinned_row("poolgate"), e2e_p50=0.0309, cpu_us_per_request=200.0),
    ])
    route = section("peers-routing", [
        row(profile_row("default"), ttft_p90=0.121, output_throughput=1583.0),
        row("vllm-router cache_aware", kind="peer", ttft_p90=0.439, output_throughput=1541.0),
        row("sglang-router cache_aware", kind="peer", ttft_p90=2.875, output_throughput=1455.0),
    ])
    checks = {c.what: c for c in peer_checks(over, route)}
    cpu = checks["gateway CPU per request vs vllm-router round_robin (same run)"]
    assert cpu.passed is True and cpu.measured == "230 µs (1.44x)"
    assert checks["added p50 latency, 64 concurrent tiny requests (peers run)"].passed is True
    pinned = checks["added p50 latency, 64 concurrent, gateway on its own CPU (pinned)"]
    assert pinned.passed is False and pinned.measured == "0.90 ms"
    ttft = checks["TTFT p90, default vs the best peer configuration"]
    assert ttft.passed is True and "vllm-router cache_aware" in ttft.target
    assert checks["output tokens/s, default vs the best peer configuration"].passed is True


def test_peer_checks_miss_and_absent_sections() -> None:
    over = section("peers-overhead", [
        row("direct", kind="direct", e2e_p50=0.0150),
        row("poolgate", e2e_p50=0.0316, cpu_us_per_request=242.0),
        row("vllm-router round_robin", kind="peer", cpu_us_per_request=160.0),
    ])
    checks = {c.what: c for c in peer_checks(over, None)}
    assert checks["gateway CPU per request vs vllm-router round_robin (same run)"].passed is False
    assert checks["added p50 latency, 64 concurrent tiny requests (peers run)"].passed is False
    assert peer_checks(None, None) == []


def test_peer_checks_read_the_unloaded_rows_and_the_ttft_floor() -> None:
    over = section("peers-overhead", [
        row("direct", kind="direct", e2e_p50=0.0150),
        row("poolgate", e2e_p50=0.0160, cpu_us_per_request=130.0),
        row("vllm-router round_robin", kind="peer", e2e_p50=0.0170, cpu_us_per_request=120.0),
        row(c1_row("direct"), kind="direct", e2e_p50=0.00090),
        row(c1_row("poolgate"), e2e_p50=0.00123),
        row(c1_row("vllm-router round_robin"), kind="peer", e2e_p50=0.00102),
        row(c1_row("sglang-router round_robin"), kind="peer", e2e_p50=0.00110),
    ])
    route = section("peers-routing", [
        row(profile_row("default"), ttft_p90=0.098, output_throughput=1587.0),
        row("sglang-router cache_aware", kind="peer", ttft_p90=0.133, output_throughput=1576.0),
        row(floor_row(profile_row("default"), 5.2), kind="floor", ttft_p90=0.089,
            output_throughput=330.0),
    ])
    checks = {c.what: c for c in peer_checks(over, route)}
    c1 = checks["added p50 latency, one request at a time (c=1)"]
    assert c1.passed is True
    assert c1.measured == "0.33 ms (vllm-router round_robin: 0.12 ms)"
    ttft = checks["TTFT p90, default vs the best peer configuration"]
    # The floor row is neither poolgate's result nor a peer: it is shown next to the verdict.
    assert ttft.passed is False and "sglang-router cache_aware" in ttft.target
    assert ttft.measured == ("98.0 ms (0.74x); the fleet's floor (at 5.2 req/s): 89.0 ms (0.67x)")
    tokens = checks["output tokens/s, default vs the best peer configuration"]
    assert tokens.passed is True and "sglang-router cache_aware" in tokens.target


def test_unloaded_check_is_absent_without_the_unloaded_pair() -> None:
    over = section("peers-overhead", [row("direct", kind="direct", e2e_p50=0.0150),
                                      row("poolgate", e2e_p50=0.0160)])
    assert not any("c=1" in c.what for c in peer_checks(over, None))

"""Rendering docs/benchmarks.md from sections."""

from __future__ import annotations

from benchmarks.suite import multicluster
from benchmarks.suite.checks import DIRECT, DIRECT_C1, GATEWAY, GATEWAY_C1, profile_row
from benchmarks.suite.machine import Machine
from benchmarks.suite.model import Section
from benchmarks.suite.report import render, routing_md
from benchmarks.suite.tables import markdown_table, overhead_table, routing_table
from tests.benchmarks.suite._rows import row, section

MACHINE = Machine(cores=2, cpu_model="Test CPU", memory_gib=24.0, os="Linux 6", python="3.11.7",
                  packages={"poolgate": "0.1.0"}, peers={"vllm-router": "0.1.17"})


def test_markdown_table_escapes_pipes() -> None:
    assert markdown_table(["a", "b"], [["x|y", "1"]]) == "| a | b |\n| --- | --- |\n| x\\|y | 1 |"


def test_overhead_table_subtracts_the_direct_row_of_the_same_concurrency() -> None:
    rows = [row(DIRECT, "direct", e2e_p50=0.010, e2e_p99=0.020),
            row(GATEWAY, e2e_p50=0.012, e2e_p99=0.025, cpu_us_per_request=250.0),
            row(DIRECT_C1, "direct", e2e_p50=0.0005, e2e_p99=0.001),
            row(GATEWAY_C1, e2e_p50=0.0009, e2e_p99=0.0015)]
    lines = overhead_table(rows, {GATEWAY: 90.0}).splitlines()
    assert lines[2].startswith("| direct | 100 | 10.0 req/s | 10.00 ms | 20.00 ms | - | - |")
    assert "| 2.00 ms | 5.00 ms | 250 µs | 90.0 µs | 0 |" in lines[3]
    assert "| 0.40 ms | 0.50 ms |" in lines[5]


def test_routing_table_ratio_against_baseline_and_errors() -> None:
    rows = [row(profile_row("default"), output_throughput=1500.0, ttft_p90=0.2,
                errors={"http_503": 3}, completed=97, queue_mean=0.5, queue_max=3.0,
                queue_rounds=10, queue_rounds_above_2x=2, queue_rounds_above_2x_floor=1),
            row(profile_row("round-robin"), output_throughput=1000.0)]
    text = routing_table(rows, profile_row("round-robin"))
    assert "| 1.50x |" in text
    assert "| 3 (http_503: 3) |" in text
    assert "| 0.5 / 3 | 1 / 2 of 10 |" in text


def test_render_full_report_with_checks_plots_and_missing_sections() -> None:
    sections = {
        "overhead": section("overhead", [
            row(DIRECT, "direct", e2e_p50=0.010), row(GATEWAY, e2e_p50=0.0104,
                                                     cpu_us_per_request=280.0)],
            commands=["python -m poolgate sim --replicas 1"]),
        "routing": section("routing", [
            row(profile_row("default"), ttft_p90=0.1, output_throughput=2000.0, queue_rounds=5),
            row(profile_row("round-robin"), ttft_p90=1.0, output_throughput=1000.0)],
            plot="routing.png",
            settings={"replicas": 8, "sim_profile": "h100-llama3-8b", "kv_cache_blocks": 1024,
                      "time_scale": 0.2, "rate": 18.0}),
        "pick": section("pick", [], settings={"sizes": [8, 64, 512]},
                        extra={"us_per_pick": {"default": {"8": 40.0, "64": 120.0, "512": 600}}}),
    }
    text = render(sections, MACHINE, "2026-11-24T15:00:00+00:00")
    assert text.startswith("# Benchmarks\n")
    assert "2 cores: Test CPU; memory 24.0 GiB" in text
    assert "vllm-router 0.1.17" in text
    # summary: both overhead targets pass, the three routing targets pass, pick misses
    summary = text.split("## Targets")[1].split("## Machine")[0]
    assert summary.count("**PASS**") == 5 and summary.count("**MISS**") == 1
    assert "![routing](benchmarks/routing.png)" in text
    assert "python -m poolgate sim --replicas 1" in text
    assert "| default | 40.0 µs | 120 µs | 600 µs |" in text
    assert "### 4a. Overhead\n\nNot measured yet: run `make bench-peers`." in text
    assert "render_unavailable" in text  # what the peers call on workers


def test_render_with_nothing_measured() -> None:
    text = render({}, MACHINE, "now")
    assert "No section with a target has been measured yet." in text
    # sections 6 and 9 (saturation) have two parts each; 7 (capacity), 8 (replicas) and 10
    # (precise) one
    assert text.count("Not measured yet") == 13


def test_routing_says_whether_the_simulator_was_busy() -> None:
    rows = [row(profile_row("default"), ttft_p90=0.1), row(profile_row("round-robin"))]
    calm = section("routing", rows, extra={"sim_cpu_share": {"a": 0.25, "b": 0.3}})
    busy = section("routing", rows, extra={"sim_cpu_share": {"a": 0.95}})
    assert "at most 30.0%, so the simulator was never the bottleneck" in routing_md(calm)
    assert "up to 95.0%, so the simulator may have limited some runs" in routing_md(busy)


def test_multicluster_section_renders_shares_and_plot() -> None:
    section = Section(
        name="multicluster", created_at="2026-11-24T15:00:00+00:00", duration_s=40.0,
        settings={"steps": [1, 8], "step_seconds": 6.0, "far_latency_s": 0.08,
                  "kv_cache_blocks": 160, "seed": 3},
        commands=["python -m poolgate sim ..."],
        extra={"steps": [
            {"clients": 1, "requests": 6, "near_share": 1.0, "ttft_p90_ms": 33.4},
            {"clients": 8, "requests": 43, "near_share": 0.86, "ttft_p90_ms": 108.0},
            {"clients": 16, "requests": 0, "near_share": None, "ttft_p90_ms": None},
        ]},
        plot="multicluster.png",
    )
    md = multicluster.markdown(section, "benchmarks")
    assert "| 1 | 6 | 100 % | 0 % | 33 ms |" in md
    assert "| 8 | 43 | 86 % | 14 % | 108 ms |" in md
    assert "| 16 | 0 | - | - | - |" in md
    assert "![multicluster](benchmarks/multicluster.png)" in md
    assert "80 ms of simulated network latency" in md
    assert "Not measured yet" in multicluster.markdown(None, "benchmarks")

"""`poolgate bench` against a real `poolgate sim` fleet: report, cache hits, queues, CPU."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from poolgate.bench import read_json
from tests.support.processes import ProcessGroup, free_port_range, poolgate_command, wait_http

pytestmark = pytest.mark.e2e


def test_bench_against_the_simulator_writes_a_complete_report(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    port = free_port_range(2)
    sim = procs.start(poolgate_command(
        "sim", "--replicas", "2", "--port", str(port), "--served-model-name", "tiny",
        "--profile", "fast", "--time-scale", "10", "--seed", "1",
    ))
    for p in (port, port + 1):
        wait_http(f"http://127.0.0.1:{p}/health", proc=sim)
    report = tmp_path / "sim.json"
    bench = procs.start(poolgate_command(
        "bench", "--compare", f"r0=http://127.0.0.1:{port}", "--compare", f"r1=http://127.0.0.1:{port + 1}",
        "--groups", "2", "--prompts-per-group", "2", "--system-prompt-len", "64",
        "--question-len", "8", "--output-len", "6", "--rate", "60", "--requests", "24",
        "--warmup", "2", "--scrape-url", f"http://127.0.0.1:{port}/metrics",
        "--scrape-url", f"http://127.0.0.1:{port + 1}/metrics", "--scrape-interval", "0.1",
        "--cpu-pid", f"r0={sim.pid}", "--json", str(report), "--raw", "--quiet",
    ))
    deadline = time.monotonic() + 60
    while bench.proc.poll() is None:
        assert time.monotonic() < deadline, bench.output()
        time.sleep(0.05)
    assert bench.proc.returncode == 0, bench.output()
    doc = read_json(report)
    assert doc["config"]["workload"]["model"] == "tiny"  # discovered from /v1/models
    r0, r1 = doc["runs"]
    for run in (r0, r1):
        s = run["summary"]
        assert (s["requests"], s["completed"], s["errors"]) == (24, 24, {})
        assert s["total_output_tokens"] == 24 * 6  # ignore_eos + max_tokens honoured
        assert s["ttft"]["count"] == 24 and s["itl"]["count"] == 24 * 5
        # Warm-up and earlier requests left both system prompts in the replica's prefix cache.
        assert s["prefix_cache_hit_rate"] is not None and s["prefix_cache_hit_rate"] > 0.3
        queue = s["queue"]
        assert queue["urls"] == [f"http://127.0.0.1:{port}/metrics", f"http://127.0.0.1:{port + 1}/metrics"]
        assert len(queue["rounds"]) >= 2
        assert all(v is not None for rnd in queue["rounds"] for v in rnd["waiting"])
        assert len(run["requests"]) == 24
    assert [q["index"] for q in r0["requests"]] == list(range(24))
    assert [q["group"] for q in r0["requests"]] == [q["group"] for q in r1["requests"]]
    cpu = r0["summary"]["cpu"]
    assert cpu["pid"] == sim.pid and cpu["requests"] == 24 and cpu["us_per_request"] > 0
    assert r1["summary"]["cpu"] is None

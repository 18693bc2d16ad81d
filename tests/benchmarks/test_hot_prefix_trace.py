"""The TTFT-tail diagnosis of benchmarks.hot_prefix: the engine trace and the cause table."""

from __future__ import annotations

from pathlib import Path

import orjson

from benchmarks.hot_prefix_trace import causes, install, match, read_trace
from poolgate.bench import RequestRecord
from poolgate.sim.engine import Engine, EngineConfig, SimRequest
from poolgate.sim.profiles import PROFILES


def _engine() -> Engine:
    return Engine(EngineConfig(PROFILES["fast"], "m", max_num_seqs=1, kv_cache_blocks=64,
                               block_size=4, max_loras=1))


def _drive(engine: Engine) -> list[tuple[str, int, float | None]]:
    """Two requests sharing a 64-token prefix (a group) on a one-slot engine, stepped to the end."""
    prefix = list(range(100, 164))
    engine.add(SimRequest("a", [*prefix, 1, 2], 2, 0, ignore_eos=True), 0.0)
    engine.add(SimRequest("b", [*prefix, 3, 4], 2, 1, ignore_eos=True), 0.0)
    now, out = 0.0, []
    while engine.has_work:
        d = engine.begin_step(now)
        assert d is not None
        now += d
        out += [(o.request_id, o.cached_tokens, o.ttft) for o in engine.end_step(now)]
    return out


def test_the_trace_records_arrivals_steps_and_first_tokens_without_changing_the_engine(
        tmp_path: Path) -> None:
    plain = _drive(_engine())
    uninstall = install(tmp_path / "t.jsonl")
    try:
        traced = _drive(_engine())
    finally:
        uninstall()
    assert traced == plain
    assert _drive(_engine()) == plain  # undone: a later engine writes nothing
    lines = [orjson.loads(x) for x in (tmp_path / "t.jsonl").read_bytes().splitlines()]
    adds = [x for x in lines if x["k"] == "add"]
    assert [(x["id"], x["run"], x["wait"]) for x in adds] == [("a", 0, 0), ("b", 0, 1)]
    admitted = [a for x in lines if x["k"] == "step" for a in x["adm"]]
    # b waited for the single slot and then found the shared prefix cached.
    assert admitted == [["a", 66], ["b", 2]]
    firsts = {x["id"]: x for x in lines if x["k"] == "first"}
    assert firsts["a"]["cached"] == 0 and firsts["b"]["cached"] == 64
    assert firsts["a"]["g"] == firsts["b"]["g"]
    reqs, steps = read_trace(tmp_path / "t.jsonl")
    assert [r.cached for r in reqs] == [0, 64]
    assert reqs[1].admitted is not None and reqs[1].admitted > reqs[1].arrival
    assert len(steps[0]) == sum(1 for x in lines if x["k"] == "step")


def _write(path: Path, events: list[dict[str, object]]) -> None:
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))


def test_causes_sorts_the_slow_requests_by_what_they_waited_for(tmp_path: Path) -> None:
    events: list[dict[str, object]] = []
    records: list[RequestRecord] = []

    def request(rid: str, replica: int, t: float, ttft: float, cached: int, group: int,
                run: int = 0, wait: int = 0) -> None:
        events.append({"k": "add", "r": replica, "id": rid, "t": t, "run": run, "wait": wait})
        events.append({"k": "first", "r": replica, "id": rid, "t": t + ttft, "ttft": ttft,
                       "cached": cached, "plen": 2100, "g": 1000 + group})
        records.append(RequestRecord(index=len(records), model="m", prompt_len=2100,
                                     max_tokens=8, scheduled=t, sent=t, ttft=ttft + 0.004,
                                     cached_tokens=cached, group=group))

    for i in range(40):  # fast, warm, spread over groups 0-3 and replicas 2-3
        request(f"f{i}", 2 + i % 2, 0.1 * i, 0.05, 2048, i % 4)
    # A request whose replica admitted another group's cold system prompt while it waited.
    events.append({"k": "step", "r": 0, "t": 4.5, "d": 0.6, "n": 2, "w": 0,
                   "adm": [["x", 2100]]})
    request("own", 1, 4.2, 1.3, 0, 1)
    request("behind", 0, 4.6, 1.0, 2048, 0, run=1)
    request("queued", 1, 4.7, 1.1, 2048, 0, run=8, wait=1)
    request("other", 1, 4.8, 1.2, 2048, 2, run=3)
    trace = tmp_path / "t.jsonl"
    _write(trace, events)
    traced, _ = read_trace(trace)
    matched = match(records, traced)
    assert all(t is not None and abs(r.ttft - t.ttft - 0.004) < 1e-9  # type: ignore[operator]
               for r, t in zip(records, matched, strict=True))
    lines = causes(records, trace, 2048, 8, 1.0)
    assert lines[0].startswith("44 of 44 records matched; client TTFT - simulator TTFT: "
                               "median 4 ms, within 50 ms of it for 44")
    assert lines[1] == "TTFT above p90 (54 ms): 4 requests"
    table = {line.split(" | ")[0]: line.split(" | ")[1:] for line in lines[3:7]}
    assert table["own cold prefill"][:1] == ["1 (25 %)"]
    assert table["behind a cold prefill"][:3] == ["1 (25 %)", "1004 ms", "1"]
    assert table["queued for a batch slot"][:1] == ["1 (25 %)"]
    assert table["queued for a batch slot"][3:] == ["8", "1"]
    assert table["other"][:1] == ["1 (25 %)"]
    assert lines[7] == "slow requests by group (0 = hottest): 0: 2, 1: 1, 2: 1"
    assert lines[8] == "slow requests by replica: 0: 1, 1: 3"


def test_extras_counts_a_response_without_cached_tokens_as_a_cold_prefill() -> None:
    from types import SimpleNamespace

    from benchmarks.hot_prefix import extras

    def rec(i: int, group: int, cached: int | None, prompt: int | None) -> RequestRecord:
        return RequestRecord(index=i, model="m", prompt_len=2100, max_tokens=8, scheduled=0.0,
                             ttft=0.1 * (i + 1), prompt_tokens=prompt, cached_tokens=cached,
                             group=group)

    records = [rec(0, 0, None, 2124),  # usage without prompt_tokens_details: nothing cached
               rec(1, 0, 2048, 2124), rec(2, 1, 1024, 2124),
               rec(3, 1, None, None)]  # no usage at all: unknown, not counted
    out = extras(SimpleNamespace(records=records), 2048)  # type: ignore[arg-type]
    assert out["cold"] == 2 and out["cold_hottest"] == 1 and out["hottest"] == 2

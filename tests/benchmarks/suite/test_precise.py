"""The `precise` section (issue 17): the precise profile file, the cache history read from KV
events, the direct traffic, the counters, rounds, checks and report; and one short run of the
precise profile with direct traffic on a real fleet publishing KV events."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import yaml

from benchmarks.suite import precise
from benchmarks.suite.direct_load import (
    STREAM_OFFSET,
    DirectSummary,
    direct_requests,
    replica_of,
)
from benchmarks.suite.kv_history import CacheCounts, CacheHistory, publishers
from benchmarks.suite.main import parse_sections
from benchmarks.suite.precise_report import markdown, precise_checks
from benchmarks.suite.store import load_sections, save_section
from poolgate.bench import RequestRecord, Workload
from poolgate.core.kv_events import AllBlocksCleared, BlockRemoved, BlockStored
from poolgate.scheduling.profile_file import load_profile_file
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.sim.kv_events import parse_kv_events_config
from tests.benchmarks.suite._rows import row, section

ADDRESSES = ["127.0.0.1:8000", "127.0.0.1:8001"]


def test_the_profile_file_is_the_default_with_the_precise_scorer_in_the_prefix_scorers_place(
) -> None:
    template = precise.profile_template()
    assert template["profile"] == precise.PRECISE
    default = BUILTIN_PROFILES["default"]
    assert len(template["plugins"]) == len(default)
    for mine, theirs in zip(template["plugins"], default, strict=True):
        if theirs["type"] != "prefix-cache-scorer":
            assert mine == theirs
            continue
        assert mine["type"] == "precise-prefix-cache-scorer"
        assert mine["weight"] == theirs["weight"]
        shared = {k: v for k, v in theirs["params"].items() if k != "missSpread"}
        assert {k: mine["params"][k] for k in shared} == shared
        assert set(mine["params"]) - set(shared) == {"tokenizer", "kvEventsConfig"}


def test_the_run_adds_where_each_replica_publishes_and_poolgate_loads_the_file(
        tmp_path: Path) -> None:
    profile = precise.precise_profile(ADDRESSES, 5557, 5657)
    (scorer,) = [p for p in profile["plugins"] if p["type"] == "precise-prefix-cache-scorer"]
    kv = scorer["params"]["kvEventsConfig"]
    assert kv["endpoints"] == {"127.0.0.1:8000": "tcp://127.0.0.1:5557",
                               "127.0.0.1:8001": "tcp://127.0.0.1:5558"}
    assert kv["replayEndpoints"]["127.0.0.1:8001"] == "tcp://127.0.0.1:5658"
    assert kv["topicFilter"] == precise.TOPIC
    path = tmp_path / "precise-profile.yaml"
    path.write_text(yaml.safe_dump(profile))
    assert set(load_profile_file(path)) == {precise.PRECISE}
    # The report shows the ports as the shell variables of the shown commands.
    shown = precise.precise_profile(["127.0.0.1:$((SIM_PORT+1))"], "$KV_PORT", "$REPLAY_PORT")
    (shown_scorer,) = [p for p in shown["plugins"] if "kvEventsConfig" in p.get("params", {})]
    assert shown_scorer["params"]["kvEventsConfig"]["endpoints"] == {
        "127.0.0.1:$((SIM_PORT+1))": "tcp://127.0.0.1:$((KV_PORT+0))"}


def test_the_simulator_takes_the_events_flag_and_the_ranges_must_not_overlap() -> None:
    config = parse_kv_events_config(precise.kv_events_config(5557, 5657))
    assert config.endpoint == "tcp://*:5557" and config.replay_endpoint == "tcp://*:5657"
    assert config.topic == precise.TOPIC
    assert precise.ranges_apart([9000, 9008, 9100], 8)
    assert not precise.ranges_apart([9000, 9100, 9004], 8)
    assert publishers(ADDRESSES, 7000) == {"127.0.0.1:8000": "tcp://127.0.0.1:7000",
                                           "127.0.0.1:8001": "tcp://127.0.0.1:7001"}


def test_the_full_settings_need_more_prefix_blocks_than_the_fleet_holds() -> None:
    s = precise.precise_settings(quick=False)
    fleet = precise.fleet_blocks(s)
    assert fleet is not None and precise.prefix_blocks(s) >= 2 * fleet
    assert s.rounds > 1 and s.direct_share > 0
    # The second case moves a share of the same load around the gateway.
    gateway, direct = precise.rates(s, True)
    assert gateway + direct == pytest.approx(s.routing.rate) and direct > 0
    assert precise.rates(s, False) == (s.routing.rate, 0.0)
    assert precise.cases(s) == [("default", False), ("precise", False), ("round-robin", False),
                                ("default", True), ("precise", True), ("round-robin", True)]
    assert precise.cases(dataclasses.replace(s, direct_share=0.0)) == precise.cases(s)[:3]


def test_the_approximate_index_never_forgets_a_prefix_at_the_full_settings() -> None:
    """What makes a prefix stored again a wrong belief of the approximate index: with its
    default bounds it holds every key the gateway files, even if every replica were sent every
    group."""
    s = precise.precise_settings(quick=False)
    r = s.routing
    requests = round(r.rate * r.duration * 1.5)  # a Poisson count well above the mean
    keys = precise.approximate_keys_per_group(precise.bench_config(s), r.warmup, requests)
    assert len(keys) <= r.groups and keys == sorted(keys, reverse=True)
    # Each group: the system prompt's blocks, then a few blocks per question.
    assert keys[-1] >= r.system_prompt_len * 4 // 64
    everywhere = {str(i): r.groups for i in range(r.fleet.replicas)}
    bound = precise.approximate_index_bound(keys, everywhere)
    assert bound["never_forgot"] and bound["max_prefixes_per_replica"] == r.groups
    # ... and one that files more than an endpoint may hold has forgotten something.
    assert not precise.approximate_index_bound([20_000], {"a": 1})["never_forgot"]
    assert not precise.approximate_index_bound([10_000] * 2, {str(i): 2 for i in range(8)})[
        "never_forgot"]


def _stored(hashes: list[int], parent: int | None) -> BlockStored:
    return BlockStored(block_hashes=hashes, parent_block_hash=parent,
                       token_ids=list(range(16 * len(hashes))), block_size=16)


def test_the_history_counts_prefixes_stored_again_after_their_eviction() -> None:
    h = CacheHistory()
    h.batch("a", 0, [_stored([1, 2, 3], None), _stored([10, 11], None)])
    # A hit stores only the new tail; another replica storing the same prefix is its first time.
    h.batch("a", 1, [_stored([4], 3)])
    h.batch("b", 0, [_stored([1, 2], None)])
    assert h.counts() == CacheCounts(blocks_stored=8, roots_stored=3, batches=3)
    assert h.held_roots("a") == 2
    # Replica a evicts the first prefix, then is sent it again: a root and blocks stored again.
    h.batch("a", 2, [BlockRemoved(block_hashes=[4, 3, 2, 1])])
    assert h.held_roots("a") == 1
    h.batch("a", 3, [_stored([1, 2, 3], None)])
    c = h.counts()
    assert (c.roots_stored, c.roots_stored_again, c.blocks_stored_again, c.blocks_removed) == (
        4, 1, 3, 4)
    # A lost batch is a gap; a reset empties the replica.
    h.batch("a", 5, [AllBlocksCleared()])
    assert h.counts().gaps == 1 and h.held_roots("a") == 0
    window = h.counts() - c
    assert window == CacheCounts(blocks_removed=5, batches=1, gaps=1)  # 1, 2, 3, 10, 11


def _config() -> precise.BenchConfig:
    s = precise.precise_settings(quick=True)
    return precise.bench_config(s)


def test_direct_traffic_shares_the_system_prompts_but_not_the_requests() -> None:
    config = _config()
    workload = Workload(config)
    mine = direct_requests(config, 200)
    assert [r.index for r in mine[:2]] == [STREAM_OFFSET, STREAM_OFFSET + 1]
    # Its own sequence of (group, question), not a replay of the gateway's warm-up or run.
    drawn = [(r.group, r.prompt) for r in mine]
    assert drawn != [(r.group, r.prompt) for r in workload.requests(200)]
    assert drawn != [(r.group, r.prompt) for r in workload.requests(200, warmup=True)]
    system = json.loads(mine[0].body)["messages"][0]["content"]
    assert mine[0].group is not None and system == workload.system_prompts[mine[0].group]
    assert [replica_of(g, 8) for g in (0, 7, 8, 63)] == [0, 7, 0, 7]


def _record(ok: bool, ttft: float, prompt: int, cached: int) -> RequestRecord:
    return RequestRecord(index=0, model="m", prompt_len=prompt, max_tokens=4, scheduled=0.0,
                         error=None if ok else "http_503", ttft=ttft if ok else None,
                         prompt_tokens=prompt, cached_tokens=cached)


def test_the_direct_summary_counts_only_what_completed() -> None:
    summary = DirectSummary.of([_record(True, 0.1, 100, 50), _record(True, 0.3, 100, 100),
                                _record(False, 9.0, 100, 100)])
    assert (summary.requests, summary.completed) == (3, 2)
    assert summary.ttft_p50 == pytest.approx(0.2) and summary.hit_rate == pytest.approx(0.75)
    assert DirectSummary.of([]).ttft_p90 is None


METRICS = """\
# HELP vllm:prefix_cache_queries_total Prefix cache queries.
# TYPE vllm:prefix_cache_queries_total counter
vllm:prefix_cache_queries_total{engine="0",model_name="m"} 1000.0
vllm:prefix_cache_queries_created{engine="0",model_name="m"} 1.7e9
# HELP vllm:prefix_cache_hits_total Prefix cache hits.
# TYPE vllm:prefix_cache_hits_total counter
vllm:prefix_cache_hits_total{engine="0",model_name="m"} 600.0
# HELP vllm:request_success_total Finished requests.
# TYPE vllm:request_success_total counter
vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 7.0
vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 3.0
# HELP vllm:num_requests_waiting Waiting.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 4.0
"""


def test_the_servers_counters_are_summed_over_replicas_and_labels() -> None:
    before: dict[str, float] = {}
    precise.add_samples(before, METRICS, precise.SIM_FAMILIES)
    assert before[precise.SUCCESS] == 10.0
    assert before[f"{precise.SUCCESS}{{finished_reason=stop}}"] == 3.0
    assert "vllm:num_requests_waiting" not in before
    after: dict[str, float] = {}
    precise.add_samples(after, METRICS, precise.SIM_FAMILIES)
    precise.add_samples(after, METRICS.replace("1000.0", "3000.0"), precise.SIM_FAMILIES)
    # Two replicas after, one before: 4000 - 1000 queries, 1200 - 600 hits.
    assert precise.server_hit_rate(before, after) == pytest.approx(600 / 3000)
    assert precise.server_hit_rate(before, before) is None


def _run(name: str, ttft: float, hits: float, again: int) -> precise.PreciseRun:
    profile = name.split(" ")[0]
    return precise.PreciseRun(row(name, ttft_p90=ttft), profile, "direct" in name, hits, 100.0,
                              CacheCounts(roots_stored=40, roots_stored_again=again))


def test_rounds_combine_into_medians_per_row() -> None:
    rounds = [[_run("default", t, h, n)] for t, h, n in ((0.9, 0.5, 30), (0.5, 0.7, 10),
                                                          (0.7, 0.6, 20))]
    (only,) = precise.combine(rounds)
    assert only.row.ttft_p90 == pytest.approx(0.7) and only.server_hit_rate == pytest.approx(0.6)
    assert only.cache.roots_stored_again == 20 and only.reprefill_share == pytest.approx(0.2)
    assert only.row.requests == 300


def _section() -> precise.Section:
    runs = [_run("default", 0.9, 0.4, 30), _run("precise", 0.5, 0.6, 5),
            _run("round-robin", 2.0, 0.1, 60), _run("default + direct traffic", 0.8, 0.4, 30),
            _run("precise + direct traffic", 1.0, 0.5, 8)]
    runs[0].index_bound = {"max_prefixes_per_replica": 30, "max_keys_per_replica": 3000,
                           "keys_total": 5000, "never_forgot": True}
    runs[1].kv_state = {"poolgate_kv_events_endpoints{state=consistent}": 8.0,
                        "poolgate_kv_events_gaps": 0.0}
    runs[4].direct_summary = DirectSummary(40, 40, 0.1, 0.3, 0.8)
    s = precise.precise_settings(quick=True)
    return section("precise", [r.row for r in runs], settings=precise.settings_dict(s),
                   commands=precise.commands(s),
                   extra={"runs": {r.row.name: r.to_dict() for r in runs},
                          "profile_file": precise.shown_profile(s)})


def test_checks_hold_precise_to_the_approximate_ttft_p90_in_both_cases() -> None:
    checks = precise_checks(_section())
    assert [(c.what.rpartition(", ")[2], c.passed) for c in checks] == [
        ("gateway only: TTFT p90", True), ("with direct traffic: TTFT p90", False)]
    assert "500 ms vs 900 ms (0.56x)" in checks[0].measured
    assert precise_checks(None) == []


def test_report_shows_the_table_the_checks_the_events_and_the_profile_file() -> None:
    text = markdown(_section())
    assert "| precise | - | 500 ms | - |" in text
    assert "| 60.0% | 5.0% | - |" in text  # server hits, prefixes again per request, no direct
    assert "| 300 ms / 80.0% |" in text
    assert "**PASS**" in text and "**MISS**" in text
    assert "consistent 8; sequence gaps 0" in text
    assert "--kv-events-config" in text and "--scheduler-config precise-profile.yaml" in text
    assert "127.0.0.1:$((SIM_PORT+7)): tcp://127.0.0.1:$((KV_PORT+7))" in text
    assert "25.0% of the same 14.0 requests/s straight to the replicas" in text
    assert "--rate 10.5" in text  # the gateway's share with direct traffic
    assert "8192 KV blocks" in text and "hold 4096 (2.0x)" in text
    assert "never forgot" in text
    assert "Not measured yet" in markdown(None)


def test_the_suite_knows_the_section(tmp_path: Path) -> None:
    assert parse_sections("precise") == ("precise",)
    save_section(tmp_path, _section())
    loaded = load_sections(tmp_path)["precise"]
    assert loaded.rows[1].name == "precise" and precise_checks(loaded)


@pytest.mark.e2e
async def test_a_precise_run_with_direct_traffic_reads_every_replicas_events(
        tmp_path: Path) -> None:
    base = precise.precise_settings(quick=True)
    routing = dataclasses.replace(
        base.routing, fleet=dataclasses.replace(base.routing.fleet, replicas=2, time_scale=1.0,
                                                profile="fast", kv_cache_blocks=128),
        rate=10.0, duration=2.0, warmup=4, groups=16, system_prompt_len=512, output_len=8)
    s = dataclasses.replace(base, routing=routing, direct_share=0.4)
    run, started = await precise.run_once(precise.PRECISE, True, s, tmp_path)
    assert run.row.completed == run.row.requests > 0
    # 16 groups of 32 blocks on 2 replicas of 128 blocks (the least the fast profile's model
    # length allows): the replicas evicted, and the suite's own subscription saw it all.
    assert run.cache.blocks_stored > 0 and run.cache.blocks_removed > 0
    assert run.cache.gaps == 0
    assert run.served >= run.row.completed
    assert run.server_hit_rate is not None and 0 < run.server_hit_rate < 1
    assert run.direct_summary is not None and run.direct_summary.completed > 0
    assert run.sim_cpu_share is not None and run.sim_cpu_share > 0
    # The gateway used the events of both replicas (none waiting, none degraded).
    assert run.kv_state["poolgate_kv_events_endpoints{state=consistent}"] == 2
    assert run.kv_state.get("poolgate_kv_events_gaps", 0.0) == 0
    # The simulator and the gateway were started, and both stopped.
    assert len(started) == 2
    for pid in started:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)

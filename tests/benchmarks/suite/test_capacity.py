"""The capacity section (issue 17, item 3): the rate search, a trial's verdict, the saturated
throughput, the fronts, the report and its target; and one short search against a real
simulator."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from pathlib import Path

import pytest

from benchmarks.suite.capacity import (
    ONE_REPLICA,
    POOLGATE_DEFAULT,
    POOLGATE_PRECISE,
    SATURATED,
    Searched,
    Trial,
    by_front,
    capacity_settings,
    fronts,
    median_low,
    partition_config,
    search_all,
    shown_command,
    step_order,
    trial_config,
    trial_name,
)
from benchmarks.suite.capacity_report import (
    capacity_checks,
    capacity_table,
    fleet_ceiling,
    markdown,
    trials_table,
)
from benchmarks.suite.capacity_search import (
    RateSearch,
    Verdict,
    grid_up,
    judge,
    keep_up,
    replica_bound,
    saturated_throughput,
    token_times,
)
from benchmarks.suite.capacity_trial import (
    TrialFront,
    event_fleet_command,
    on_fleet,
    precise_gateway,
)
from benchmarks.suite.capacity_warmup import one_per_group
from benchmarks.suite.commands import SimSpec
from benchmarks.suite.epp import zipf_config
from benchmarks.suite.machine import Machine
from benchmarks.suite.main import parse_sections
from benchmarks.suite.model import Section
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.report import render, summary_checks
from benchmarks.suite.stack import direct
from benchmarks.suite.store import load_sections, save_section
from poolgate.bench import BenchError
from poolgate.bench.records import RequestRecord
from poolgate.sim.profiles import H100_LLAMA3_8B
from tests.benchmarks.suite._rows import row, section

# -- the search --------------------------------------------------------------------------------


def _run_search(search: RateSearch, capacity_of_front: float) -> list[tuple[float, bool]]:
    """Drive `search` against a front that passes exactly the rates up to its capacity."""
    while (rate := search.next_rate()) is not None:
        search.record(rate, rate <= capacity_of_front)
        assert len(search.trials) < 50
    return search.trials


def test_search_doubles_until_a_failure_then_bisects_to_the_resolution() -> None:
    search = RateSearch(start=4, resolution=1, cap=28)
    trials = _run_search(search, 21.3)
    assert trials == [(4, True), (8, True), (16, True), (28, False), (22, False), (19, True),
                      (20, True), (21, True)]
    assert search.passed_at == 21 and search.failed_at == 22 and not search.reached_cap


def test_search_stops_at_its_cap_when_the_front_passes_there() -> None:
    search = RateSearch(start=4, resolution=1, cap=12)
    assert _run_search(search, 100) == [(4, True), (8, True), (12, True)]
    assert search.reached_cap and search.done


def test_search_shrinks_when_the_first_rate_fails() -> None:
    search = RateSearch(start=4, resolution=1, cap=28)
    assert _run_search(search, 2.5) == [(4, False), (2, True), (3, False)]
    assert search.passed_at == 2
    nothing = RateSearch(start=4, resolution=1, cap=28)
    assert _run_search(nothing, 0.5) == [(4, False), (2, False), (1, False)]
    assert nothing.passed_at is None


def test_search_on_a_finer_grid() -> None:
    search = RateSearch(start=0.5, resolution=0.125, cap=3.5)
    _run_search(search, 2.6)
    assert search.passed_at == 2.5 and search.failed_at == 2.625


@pytest.mark.parametrize(("start", "resolution", "cap", "growth"), [
    pytest.param(4, 0, 28, 2, id="no-resolution"),
    pytest.param(0.5, 1, 28, 2, id="start-below-resolution"),
    pytest.param(4, 1, 2, 2, id="cap-below-start"),
    pytest.param(4, 1, 28, 1, id="no-growth"),
])
def test_search_refuses_settings_it_cannot_use(start: float, resolution: float, cap: float,
                                                growth: float) -> None:
    with pytest.raises(ValueError, match="resolution"):
        RateSearch(start, resolution, cap, growth)


def test_grid_up() -> None:
    assert grid_up(27.1, 1) == 28 and grid_up(28.0, 1) == 28 and grid_up(3.3, 0.125) == 3.375


def test_steps_rotate_the_order_of_the_fronts() -> None:
    names = ["a", "b", "c"]
    assert [step_order(names, k) for k in range(4)] == [
        ["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert step_order([], 3) == []


def test_the_median_round_is_a_rate_a_round_found() -> None:
    assert median_low([17.0, 16.0, 18.0]) == 17.0
    assert median_low([17.0, None, 16.0]) == 16.0
    assert median_low([None, None, 16.0]) is None
    assert median_low([9.0, 8.0]) == 8.0
    assert median_low([]) is None


def _searched(name: str, rates: list[tuple[float, bool]], label: str = "") -> Searched:
    x = Searched(name, "peer", RateSearch(4, 1, 28), label=label)
    for rate, passed in rates:
        x.search.record(rate, passed)
        verdict = Verdict(rate, passed, 0.1 if passed else 0.9, 1.0, 0, "" if passed else "no")
        x.trials.append(Trial(verdict, row(trial_name(x.key, rate), ttft_p90=verdict.ttft_p90)))
    return x


def test_rounds_of_a_front_are_grouped_and_the_median_one_reported() -> None:
    rounds = [_searched("a", [(4, True), (8, False), (6, True)], "a (round 1)"),
              _searched("b", [(4, False)], "b (round 1)"),
              _searched("a", [(4, True), (8, True), (9, False)], "a (round 2)"),
              _searched("a", [(4, True), (8, False), (7, True)], "a (round 3)")]
    results = by_front(rounds)
    assert list(results) == ["a", "b"]
    a = results["a"]
    assert a.rates == [6, 8, 7] and a.median.key == "a (round 3)"
    data = a.to_dict()
    assert data["max_rate"] == 7 and data["max_rates"] == [6, 8, 7]
    assert [len(r["trials"]) for r in data["rounds"]] == [3, 3, 3]
    assert results["b"].rates == [None] and results["b"].to_dict()["max_rate"] is None


# -- one trial's verdict -----------------------------------------------------------------------


def _rec(i: int, scheduled: float, e2e: float, *, error: str | None = None,
         sent: float | None = None) -> RequestRecord:
    start = scheduled if sent is None else sent
    return RequestRecord(index=i, model="m", prompt_len=10, max_tokens=4, scheduled=scheduled,
                         sent=start, finished=start + e2e, error=error,
                         e2e=None if error else e2e, ttft=None if error else 0.05)


def _steady(n: int = 20, gap: float = 1.0, e2e: float = 2.0) -> list[RequestRecord]:
    return [_rec(i, i * gap, e2e) for i in range(n)]


def test_a_trial_that_keeps_up_under_the_target_passes() -> None:
    records = _steady()
    assert keep_up(records) == pytest.approx(1.0)
    verdict = judge(20.0, records, ttft_p90=0.3)
    assert verdict.passed and verdict.reason == "" and verdict.failed == 0


def test_a_trial_over_the_ttft_target_fails_with_its_p90() -> None:
    verdict = judge(20.0, _steady(), ttft_p90=0.5)
    assert not verdict.passed and verdict.reason == "TTFT p90 500 ms"


def test_a_front_that_falls_behind_fails_even_under_the_ttft_target() -> None:
    # Arrivals every second for 19 s; completions every 1.25 s: 80 % of the arrival rate.
    slow = [_rec(i, float(i), 2.0 + 0.25 * i) for i in range(20)]
    verdict = judge(20.0, slow, ttft_p90=0.3)
    assert not verdict.passed and verdict.keep_up == pytest.approx(0.8)
    assert verdict.reason == "fell behind: completions at 80% of the arrival rate"
    # The e2e of the last request a second longer than the others: 19 / 20 s, within 90 %.
    jitter = [*_steady(19), _rec(19, 19.0, 3.0)]
    assert judge(20.0, jitter, ttft_p90=0.3).passed
    assert keep_up(jitter) == pytest.approx(0.95)
    assert keep_up(_steady(1)) is None


def test_failed_requests_fail_the_trial() -> None:
    records = _steady()
    records[3] = _rec(3, 3.0, 0.1, error="http_503")
    verdict = judge(20.0, records, ttft_p90=0.3)
    assert not verdict.passed and verdict.reason == "1 of 20 requests failed"
    assert not judge(1.0, [], ttft_p90=None).passed


def _streamed(i: int, sent: float, ttft: float, gaps: list[float]) -> RequestRecord:
    rec = _rec(i, sent, ttft + sum(gaps))
    rec.ttft, rec.itl = ttft, gaps
    return rec


def test_token_times_follow_the_first_token_and_the_gaps() -> None:
    assert token_times(_streamed(0, 1.0, 0.5, [0.25, 0.25])) == [1.5, 1.75, 2.0]
    assert token_times(_rec(1, 0.0, 1.0, error="timeout")) == []


def test_saturated_throughput_counts_tokens_not_bursty_completions() -> None:
    # Two slots, batches of two requests of 4 tokens each, one token per 0.5 s step: a batch
    # takes 2 s, so 1 request/s, however the completions fall in the window.
    records = [_streamed(2 * b + k, 2.0 * b, 0.5, [0.5, 0.5, 0.5]) for b in range(10)
               for k in range(2)]
    assert saturated_throughput(records, 5.0, 15.0) == pytest.approx(1.0, rel=0.06)
    assert saturated_throughput(records, 5.2, 14.9) == pytest.approx(1.0, rel=0.06)
    assert saturated_throughput([], 0.0, 1.0) is None
    assert saturated_throughput(records, 3.0, 3.0) is None


def test_the_step_time_model_of_a_saturated_replica() -> None:
    # 8 slots at 7.2 ms a step (6.4 + 8 x 0.1), 64 steps a batch, at time scale 0.2.
    assert replica_bound(H100_LLAMA3_8B, 8, 0.2, 64, 0) == pytest.approx(8 * 0.2 / (64 * 0.0072))
    # Each request's 80 uncached prompt tokens add 8 x 80 x 0.05 ms to a batch.
    assert replica_bound(H100_LLAMA3_8B, 8, 0.2, 64, 80) == pytest.approx(
        1.6 / (64 * 0.0072 + 0.032))


# -- fronts, configs, commands -----------------------------------------------------------------


def test_fronts_are_poolgate_then_each_peer_cache_aware_and_one_round_robin(tmp_path: Path) -> None:
    s = capacity_settings(quick=True)
    assert [f.name for f in fronts(s, None, tmp_path)] == [POOLGATE_DEFAULT, POOLGATE_PRECISE]
    names = [f.name for f in fronts(s, tmp_path / "venv", tmp_path)]
    assert names == [POOLGATE_DEFAULT, POOLGATE_PRECISE, "vllm-router cache_aware",
                     "sglang-router cache_aware", "vllm-router round_robin"]


def test_settings_use_the_skewed_fleet_and_partition_its_groups() -> None:
    s = capacity_settings(quick=False)
    assert s.fleet.replicas == 8 and s.fleet.max_num_seqs == 8 and s.replica.replicas == 1
    assert s.saturating_concurrency == 16
    one = partition_config(s)
    assert one.workload.groups == 2 and one.workload.group_zipf == 0.0
    assert one.workload.system_prompt_len == s.routing.system_prompt_len


def test_shown_commands_name_the_rate_and_the_closed_loop_duration() -> None:
    s = capacity_settings(quick=True)
    config = trial_config(partition_config(s), 3.0, 20.0, 16)
    shown = shown_command(config)
    assert "--rate RATE --arrival poisson --duration 20" in shown and "--warmup 16" in shown
    assert "--scrape-url" not in shown
    closed = dataclasses.replace(config, load=dataclasses.replace(
        config.load, rate=None, concurrency=16, duration=30.0))
    assert "--concurrency 16 --duration 30" in shown_command(closed)


def test_the_group_warm_up_has_one_request_of_every_group() -> None:
    config = partition_config(capacity_settings(quick=True))
    assert sorted(g for r in one_per_group(config) if (g := r.group) is not None) == [0, 1]
    skewed = trial_config(zipf_config(capacity_settings(quick=True).routing), 4.0, 10.0, 0)
    warm = one_per_group(skewed)
    assert sorted(g for r in warm if (g := r.group) is not None) == list(range(16))
    assert len(warm) == 16


async def test_a_front_that_does_not_start_ends_its_search_with_a_note(tmp_path: Path) -> None:
    async def exits(group: ProcessGroup, spec: SimSpec, workdir: Path) -> TrialFront:
        raise BenchError("router exited with status 1\nits log")

    searched = Searched("x", "peer", RateSearch(4, 1, 28), label="x (round 2)")
    other = Searched("y", "peer", RateSearch(4, 1, 4))
    found = await search_all([(searched, exits), (other, exits)], SimSpec(1, "zero"),
                             partition_config(capacity_settings(quick=True)), 1.0, 0, tmp_path)
    assert searched.broken == "router exited with status 1" and searched.trials == []
    assert found.notes == ["x (round 2): stopped at 4 req/s: router exited with status 1",
                           "y: stopped at 4 req/s: router exited with status 1"]


# -- the report --------------------------------------------------------------------------------


def _trial(rate: float, passed: bool, p90: float, reason: str = "") -> dict[str, object]:
    return {"rate": rate, "passed": passed, "ttft_p90": p90, "reason": reason}


def _capacity_section(ours: float | None, peer: float | None) -> Section:
    fronts_data = {
        POOLGATE_DEFAULT: {"kind": "poolgate", "max_rate": ours, "reached_cap": False,
                           "trials": [_trial(16, True, 0.2), _trial(24, False, 0.9,
                                                                    "TTFT p90 900 ms")],
                           "max_rates": [ours, 20.0],
                           "rounds": [{"trials": [_trial(16, True, 0.2),
                                                  _trial(24, False, 0.9, "TTFT p90 900 ms")]},
                                      {"trials": [_trial(20, True, 0.3)],
                                       "broken": "gateway exited"}]},
        "sglang-router cache_aware": {"kind": "peer", "max_rate": peer, "reached_cap": False,
                                      "trials": [_trial(4, peer is not None, 0.3)]},
    }
    rows = [row(POOLGATE_DEFAULT, ttft_p50=0.08, ttft_p90=0.2, ttft_p99=0.4,
                prefix_cache_hit_rate=0.97),
            row(SATURATED, kind="ceiling", output_throughput=200.0, prefix_cache_hit_rate=0.99),
            row(ONE_REPLICA, kind="ceiling", request_throughput=2.5, ttft_p90=0.3)]
    ceiling = {"replicas": 8, "concurrency": 16, "one_replica_saturated": 3.4,
               "fleet_saturated": 27.2, "fleet_analytic": 27.8, "fleet_partitioned": 20.0,
               "one_replica_search": {"trials": [_trial(2.5, True, 0.3),
                                                 _trial(2.625, False, 0.6, "TTFT p90 600 ms")]}}
    return section("capacity", rows, settings={"replicas": 8, "time_scale": 0.2, "trial": 20.0},
                   extra={"fronts": fronts_data, "ceiling": ceiling})


def test_the_target_compares_poolgate_with_the_best_peer_and_quotes_the_ceiling() -> None:
    sec = _capacity_section(ours=21.0, peer=12.0)
    [check] = capacity_checks(sec)
    assert check.passed is True and check.target == ">= sglang-router cache_aware's 12.0 req/s"
    assert check.measured == "21.0 req/s (1.75x); fleet ceiling 27.2 req/s (77.2%)"
    [missed] = capacity_checks(_capacity_section(ours=10.0, peer=12.0))
    assert missed.passed is False
    [no_peer] = capacity_checks(_capacity_section(ours=10.0, peer=None))
    assert no_peer.passed is True and "no peer met the target" in no_peer.target
    [unmeasured] = capacity_checks(_capacity_section(ours=None, peer=12.0))
    assert unmeasured.passed is None
    assert capacity_checks(None) == []


def test_the_table_shows_each_front_and_both_ceiling_rows() -> None:
    sec = _capacity_section(ours=21.0, peer=None)
    table = capacity_table(sec)
    lines = table.splitlines()
    assert lines[2].startswith("| poolgate default | 21.0 req/s (median of 21, 20) | 24 req/s: "
                               "TTFT p90 900 ms | 80 ms")
    assert "77.2%" in lines[2] and lines[2].endswith("| 3 |")
    assert lines[3].startswith("| sglang-router cache_aware | < 4.0 req/s | 4 req/s")
    assert "fleet ceiling: 8 x one replica saturated (16 in flight" in lines[4]
    assert "27.2 req/s" in lines[4] and "analytic: 27.8 req/s" in lines[4]
    assert "1,600.0 tok/s" in lines[4]  # 8 x the one replica's 200
    assert "20.0 req/s" in lines[5] and "one replica at 2.625 req/s: TTFT p90 600 ms" in lines[5]
    assert fleet_ceiling(sec) == 27.2
    trials = trials_table(sec)
    assert "| poolgate default, round 1 | 16: 200 ms pass, 24: 900 ms fail | - |" in trials
    assert "| poolgate default, round 2 | 20: 300 ms pass | gateway exited |" in trials
    assert "| sglang-router cache_aware | 4: 300 ms fail | - |" in trials
    assert "2.5: 300 ms pass" in trials


def test_the_section_is_registered_saved_and_rendered(tmp_path: Path) -> None:
    assert parse_sections("capacity") == ("capacity",)
    sec = _capacity_section(ours=21.0, peer=12.0)
    save_section(tmp_path, sec)
    loaded = load_sections(tmp_path)["capacity"]
    assert loaded == sec
    assert [(i, c.what) for i, c in summary_checks({"capacity": loaded}) if i == "17"] == [
        ("17", "highest Poisson rate with TTFT p90 < 500 ms, default vs the best peer "
               "configuration")]
    machine = Machine(cores=2, cpu_model="x", memory_gib=None, os="linux", python="3.11",
                      packages={}, peers={})
    text = render({"capacity": loaded}, machine, "now")
    assert "## 7. Capacity: the highest rate under a TTFT target (issue 17)" in text
    assert "| 17 | highest Poisson rate" in text
    assert "Not measured yet" in markdown(None)


# -- against a real simulator ------------------------------------------------------------------


@pytest.mark.e2e
async def test_a_short_search_against_a_real_replica(tmp_path: Path) -> None:
    """Two trials on a one-replica zero-latency fleet, client direct: both pass, so the search
    stops at its cap, with a row and a verdict per trial."""
    s = capacity_settings(quick=True)
    spec = SimSpec(replicas=1, profile="zero", time_scale=1.0)
    searched = Searched(ONE_REPLICA, "direct", RateSearch(start=2, resolution=2, cap=4))
    base = partition_config(s)
    found = await search_all([(searched, on_fleet(direct))], spec, base, 1.5, 2, tmp_path)
    assert [t.verdict.rate for t in searched.trials] == [2, 4]
    assert all(t.verdict.passed for t in searched.trials), [t.verdict for t in searched.trials]
    assert searched.search.reached_cap and searched.best is not None
    rows = [t.row for t in searched.trials]
    assert [r.name for r in rows] == [trial_name(ONE_REPLICA, 2), trial_name(ONE_REPLICA, 4)]
    assert all(r.completed == r.requests > 0 for r in rows)
    assert found.notes == [] and found.commands == []  # no front: the client calls the replica


@pytest.mark.e2e
async def test_a_trial_of_the_precise_front_on_a_fleet_publishing_events(tmp_path: Path) -> None:
    """The precise profile's gateway in front of a replica publishing KV events: the group
    warm-up and one trial go through it, and its command is collected for the report."""
    s = capacity_settings(quick=True)
    spec = SimSpec(replicas=1, profile="zero", time_scale=1.0)
    searched = Searched(POOLGATE_PRECISE, "poolgate", RateSearch(start=2, resolution=2, cap=2))
    found = await search_all([(searched, precise_gateway(1.0))], spec, partition_config(s), 1.5,
                             0, tmp_path)
    assert searched.broken is None, found.notes
    [trial] = searched.trials
    assert trial.verdict.passed, trial.verdict
    assert trial.row.completed == trial.row.requests > 0
    assert any("--scheduler-config precise-profile.yaml" in c for c in found.commands)


def test_the_event_fleet_command_pastes_into_a_shell() -> None:
    """The shown `--kv-events-config` JSON reaches the simulator as JSON with the ports filled."""
    command = event_fleet_command(capacity_settings(quick=True).fleet)
    script = (f"SIM_PORT=8000; KV_PORT=5557; REPLAY_PORT=5600; set -- {command}; "
              'for a in "$@"; do printf "%s\\n" "$a"; done')
    args = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True,
                          timeout=30).stdout.splitlines()
    config = json.loads(args[args.index("--kv-events-config") + 1])
    assert config["endpoint"] == "tcp://*:5557" and config["replay_endpoint"] == "tcp://*:5600"
    assert args[args.index("--port") + 1] == "8000"

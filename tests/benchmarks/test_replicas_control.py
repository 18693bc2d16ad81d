"""benchmarks.replicas_control: the three runs, the machine's CPU from /proc/stat, the gateways'
counters, the medians and where the control falls between one gateway and three."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest

from benchmarks import replicas_control as rc
from benchmarks.suite import replicas
from tests.benchmarks.suite._rows import row

STAT = """cpu  1000 50 300 8000 150 10 20 5 7 0
cpu0 500 25 150 4000 75 5 10 3 7 0
cpu1 500 25 150 4000 75 5 10 2 0 0
intr 12345 0 0
ctxt 999
"""


def test_the_machine_is_busy_for_everything_but_idle_and_iowait() -> None:
    cpu = rc.machine_cpu(STAT)
    # user nice system idle iowait irq softirq steal; guest (7) is already inside user
    assert cpu == rc.MachineCpu(busy=1000 + 50 + 300 + 10 + 20 + 5, total=9535)
    later = rc.MachineCpu(busy=cpu.busy + 150, total=cpu.total + 200)
    assert rc.busy_share(cpu, later) == pytest.approx(0.75)
    assert rc.busy_share(cpu, cpu) is None


def test_proc_stat_without_the_aggregate_line_is_refused() -> None:
    with pytest.raises(ValueError, match="aggregate 'cpu' line"):
        rc.machine_cpu("cpu0 1 2 3 4 5\nintr 1\n")
    with pytest.raises(ValueError, match="aggregate 'cpu' line"):
        rc.machine_cpu("cpu 1 2 3\n")


def test_this_machines_proc_stat_reads_as_a_share_between_zero_and_one() -> None:
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat")
    before = rc.read_machine_cpu()
    sum(i * i for i in range(200_000))
    after = rc.read_machine_cpu()
    assert after.total >= before.total and after.busy >= before.busy
    share = rc.busy_share(before, after)
    assert share is None or 0.0 <= share <= 1.0


def test_a_gateways_answered_requests_and_shared_view_come_from_its_metrics() -> None:
    registry = CollectorRegistry()
    answered = Counter("poolgate_requests", "answered", ["route", "status"], registry=registry)
    answered.labels("r", "200").inc(40)
    answered.labels("r", "503").inc(2)
    Gauge("poolgate_shared_load_peers", "peers", registry=registry).set(2)
    Counter("poolgate_shared_load_errors", "errors", ["reason"],
            registry=registry).labels("timeout").inc(3)
    Counter("poolgate_upstream_errors", "other", registry=registry).inc(7)
    text = generate_latest(registry).decode()
    assert rc.gateway_requests(text) == 42  # not the _created samples, not other counters
    view = replicas.shared_view(text)
    assert view["poolgate_shared_load_peers"] == 2
    assert view["poolgate_shared_load_errors_total{timeout}"] == 3
    assert rc.gateway_requests("") == 0


def test_each_round_runs_one_gateway_three_sharing_and_three_with_one_serving() -> None:
    names = [f.name for f in rc.fronts("precise", 0.2, 0.05)]
    assert names == ["precise: 1 gateway", "precise: 3 gateways, shared in-flight view",
                     "precise: 3 gateways running, 1 serving"]
    # the first two are the replicas section's own rows, so the figures compare
    s = replicas.replica_settings(quick=True)
    section = [f.name for f in replicas.fronts(s)]
    assert names[0] in section and names[1] in section


@pytest.mark.parametrize("serving", [0, 4])
def test_serving_more_gateways_than_run_or_none_is_refused(serving: int) -> None:
    with pytest.raises(ValueError, match="serving must be between 1 and 3 gateways"):
        replicas.behind_front(3, "default", True, 0.2, 0.05, serving=serving)


def _run(name: str, round_: int, p90: float, sim: float, busy: float | None) -> rc.ControlRun:
    return rc.ControlRun(
        name, round_, row(name, ttft_p90=p90, prefix_cache_hit_rate=0.9, queue_mean=0.25,
                          queue_max=round_ + 3.0), 45.0, 2, busy,
        {"envoy": 0.2, "gateway 1": 0.3, "gateway 2": 0.1, "redis": 0.01, rc.SIMULATOR: sim,
         rc.CLIENT: 0.25})


def test_rounds_summarise_into_medians_per_run_in_first_seen_order() -> None:
    runs = [_run("b", 0, 0.5, 0.30, 0.90), _run("a", 0, 0.3, 0.20, 0.80),
            _run("b", 1, 0.7, 0.34, 0.94), _run("a", 1, 0.35, 0.22, None),
            _run("b", 2, 0.6, 0.32, 0.92)]
    b, a = rc.summarise(runs)
    assert (b["name"], b["rounds"], a["name"], a["rounds"]) == ("b", 3, "a", 2)
    assert b["ttft_p90"] == pytest.approx(0.6)
    assert b["ttft_p90_by_round"] == [0.5, 0.7, 0.6]
    assert b["sim_cores"] == pytest.approx(0.32)
    assert (b["queue_mean"], b["queue_max"], a["queue_max"]) == (0.25, 4.0, 3.5)
    assert b["machine_busy"] == pytest.approx(0.92)
    assert a["machine_busy"] == pytest.approx(0.80)  # a round without a reading is left out
    assert b["gateway_cores"] == pytest.approx(0.4)
    assert b["front_cores"] == pytest.approx(0.61)  # Envoy, gateways and Redis
    assert b["client_cores"] == pytest.approx(0.25)
    # 0.92 of 2 cores busy, 1.18 of them this run's processes: 0.66 elsewhere
    assert b["other_cores"] == pytest.approx(0.92 * 2 - (0.61 + 0.32 + 0.25))
    assert runs[3].other is None
    table = rc.markdown([b, a])
    assert table.count("\n| b |") == 1 and "600 ms" in table and "500 ms / 700 ms / 600 ms" in table
    assert "| 0.2 / 4 |" in table


def test_the_control_is_placed_between_one_gateway_and_three_sharing() -> None:
    assert rc.gap_reproduced(0.35, 0.53, 0.35) == pytest.approx(0.0)
    assert rc.gap_reproduced(0.35, 0.53, 0.53) == pytest.approx(1.0)
    assert rc.gap_reproduced(0.30, 0.50, 0.35) == pytest.approx(0.25)
    assert rc.gap_reproduced(0.30, 0.50, 0.60) == pytest.approx(1.5)
    assert rc.gap_reproduced(0.30, 0.30, 0.40) is None
    assert rc.gap_reproduced(0.30, None, 0.40) is None
    summary = rc.summarise([_run(rc.one_row("p"), 0, 0.3, 0.2, 0.8),
                            _run(rc.shared_row("p"), 0, 0.5, 0.2, 0.8),
                            _run(rc.control_row("p"), 0, 0.35, 0.2, 0.8)])
    line = rc.verdict(summary, "p")
    assert "300 ms" in line and "500 ms" in line and "350 ms" in line and "25 %" in line
    assert "between them" in line
    summary[2]["ttft_p90"] = 0.25
    assert "-25 %" in rc.verdict(summary, "p") and "below one gateway's" in rc.verdict(summary, "p")
    assert "no gap" in rc.verdict(summary[:1], "p")


@pytest.mark.parametrize(("argv", "flag"), [(["--rounds", "0"], "--rounds"),
                                            (["--duration", "-1"], "--duration"),
                                            (["--profile", "nope"], "--profile")])
def test_bad_arguments_are_refused_naming_the_flag(
        argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        rc.main(argv)
    assert exited.value.code == 2
    assert flag in capsys.readouterr().err

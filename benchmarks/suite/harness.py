"""Running a list of fronts on an identical seeded workload and collecting rows, results and the
exact commands; a front that cannot start is noted and skipped, never faked."""

from __future__ import annotations

import dataclasses
import os
import re
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.suite.commands import CONFIG_DIR, SIM_PORT, SimSpec, display, sim_argv
from benchmarks.suite.manifests import ENDPOINTS_FILE
from benchmarks.suite.model import RunRow, median_row
from benchmarks.suite.pinning import FRONT_CPU_INDEX, LOAD_CPU_INDEX, pinned, usable_cpus
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.stack import Fleet, StartFront, start_fleet
from poolgate.bench import BenchConfig, BenchError, BenchResult, Target, run_benchmark
from poolgate.bench.cpu import cpu_seconds


@dataclass(frozen=True, slots=True)
class RunSpec:
    """One target of a comparison: its row name, its kind and how to start it."""

    name: str
    kind: str
    start: StartFront
    config: BenchConfig | None = None  # overrides the experiment's config (e.g. concurrency 1)
    # Client and simulator on one CPU, the front on another (see `pinning`).
    pinned: bool = False


@dataclass
class Outcome:
    """What a list of runs produced."""

    rows: list[RunRow] = field(default_factory=list)
    results: list[BenchResult] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    sim_cpu_us_per_request: dict[str, float] = field(default_factory=dict)
    sim_cpu_share: dict[str, float] = field(default_factory=dict)  # of one core, over the run
    per_round: dict[str, list[dict[str, float | None]]] = field(default_factory=dict)


def slug(name: str) -> str:
    """A file-name-safe form of a run name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")


def sim_command(spec: SimSpec) -> str:
    """The simulator's command as shown in the report (ports vary per run)."""
    return display(sim_argv(spec, SIM_PORT, CONFIG_DIR / ENDPOINTS_FILE))


async def _measure(run: RunSpec, config: BenchConfig, group: ProcessGroup, fleet: Fleet,
                   outcome: Outcome, scrape: bool) -> None:
    print(f"  {run.name}: starting", file=sys.stderr, flush=True)
    front = await run.start(group, fleet)
    cfg = run.config or config
    if scrape:
        cfg = dataclasses.replace(cfg, scrape_urls=fleet.metrics_urls)
    layout: list[tuple[int, set[int]]] = []
    if run.pinned:
        cpus = usable_cpus()
        load, own = {cpus[LOAD_CPU_INDEX]}, {cpus[FRONT_CPU_INDEX]}
        # Later entries win: the suite's tree holds the simulator and the front too.
        layout = [(os.getpid(), load), (fleet.process.pid, load)]
        if front.pid is not None:
            layout.append((front.pid, own))
    sim_before, wall_before = cpu_seconds(fleet.process.pid), time.monotonic()
    with pinned(layout):
        result = await run_benchmark(cfg, Target(run.name, front.url, cpu_pid=front.pid))
    sim_used = cpu_seconds(fleet.process.pid) - sim_before
    wall = time.monotonic() - wall_before
    command = front.shown or "(none: the client calls the replica)"
    outcome.rows.append(RunRow.of(run.name, run.kind, result, command))
    outcome.results.append(result)
    row = outcome.rows[-1]
    print(f"  {run.name}: {row.completed}/{row.requests} ok, {row.request_throughput:.1f} req/s, "
          f"{row.output_throughput:.0f} tok/s", file=sys.stderr, flush=True)
    if front.shown and command not in outcome.commands:
        outcome.commands.append(command)
    if result.records:
        outcome.sim_cpu_us_per_request[run.name] = sim_used * 1e6 / len(result.records)
    if wall > 0:
        outcome.sim_cpu_share[run.name] = sim_used / wall


def _skip(outcome: Outcome, run: RunSpec, error: BenchError) -> None:
    first = str(error).strip().splitlines()
    reason = first[0] if first else type(error).__name__
    outcome.notes.append(f"{run.name}: not measured: {reason}")


async def fresh_fleet_each(spec: SimSpec, runs: list[RunSpec], config: BenchConfig,
                           workdir: Path, *, scrape: bool) -> Outcome:
    """Each run gets a new fleet (cold caches, same seed), so no run inherits another's state."""
    outcome = Outcome()
    for run in runs:
        with ProcessGroup(workdir / slug(run.name) / "logs") as group:
            try:
                fleet = await start_fleet(group, spec, workdir / slug(run.name))
                await _measure(run, config, group, fleet, outcome, scrape)
            except BenchError as e:
                _skip(outcome, run, e)
    return outcome


async def shared_fleet(spec: SimSpec, runs: list[RunSpec], config: BenchConfig,
                       workdir: Path, rounds: int = 1) -> Outcome:
    """One fleet for every run (a zero-latency fleet keeps no state that matters); each front
    is stopped before the next starts, so only one of them uses CPU at a time.

    With `rounds` > 1 the whole list runs that many times, interleaved (so a slow spell of a
    shared machine touches every front alike), and each row holds the medians over its rounds
    (`median_row`); `per_round` keeps every round's CPU per request and p50.
    """
    passes: list[Outcome] = []
    with ProcessGroup(workdir / "logs") as fleet_group:
        fleet = await start_fleet(fleet_group, spec, workdir)
        for n in range(rounds):
            if rounds > 1:
                print(f"  round {n + 1} of {rounds}", file=sys.stderr, flush=True)
            outcome = Outcome()
            for run in runs:
                with ProcessGroup(workdir / "logs" / slug(run.name)) as group:
                    try:
                        await _measure(run, config, group, fleet, outcome, False)
                    except BenchError as e:
                        _skip(outcome, run, e)
            passes.append(outcome)
    return passes[0] if rounds == 1 else _combine(passes)


def _combine(passes: list[Outcome]) -> Outcome:
    """Median rows over interleaved rounds; the plot keeps each run's median-CPU round."""
    out = Outcome()
    names = list(dict.fromkeys(r.name for p in passes for r in p.rows))
    for name in names:
        found = [(r, res, p) for p in passes for r, res in zip(p.rows, p.results, strict=True)
                 if r.name == name]
        rows = [r for r, _, _ in found]
        out.rows.append(median_row(rows))
        by_cpu = sorted(found, key=lambda f: f[0].cpu_us_per_request or 0.0)
        out.results.append(by_cpu[len(by_cpu) // 2][1])
        out.per_round[name] = [{"cpu_us_per_request": r.cpu_us_per_request, "e2e_p50": r.e2e_p50}
                               for r in rows]
        sims = [v for _, _, p in found if (v := p.sim_cpu_us_per_request.get(name)) is not None]
        if sims:
            out.sim_cpu_us_per_request[name] = statistics.median(sims)
        shares = [v for _, _, p in found if (v := p.sim_cpu_share.get(name)) is not None]
        if shares:
            out.sim_cpu_share[name] = statistics.median(shares)
    for p in passes:
        out.commands.extend(c for c in p.commands if c not in out.commands)
        out.notes.extend(n for n in p.notes if n not in out.notes)
    return out

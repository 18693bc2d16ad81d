"""Issue 17, item 3: the highest Poisson rate at which TTFT p90 stays under 500 ms on the
Zipf-skewed shared-prefix workload, for poolgate and the peer routers side by side, and the
fleet's own capacity on that workload as the ceiling.

The fleet and workload are the epp section's routing part (8 simulated H100s with 8 batch slots
each, 16 system prompts whose popularity is Zipf-skewed, the hottest about a quarter). The
fronts: poolgate's default profile, the precise profile (the default's plugins with the precise
prefix scorer, on the same fleet publishing KV events), each peer's cache_aware and one
round_robin. Every
front's rate is searched separately (`RateSearch`: double until a trial fails, then bisect), each
trial on a fresh fleet that first gets one request of every group through the front
(`capacity_warmup`); one step of the search runs one trial of every front still searching, in an
order that rotates per step, so a slow spell of the shared machine touches every front alike.

The ceiling is measured on one replica of the same fleet, client direct, with only the two
groups a perfect partition would give it (16 groups over 8 replicas), so every request after the
first of its group hits the cache: (a) closed loop with twice its batch slots outstanding, its
throughput (tokens streamed per second over tokens per request) times the replica count is what
the fleet serves at most, whatever the router; (b) the same rate search on it, times the replica count, is what eight perfectly
partitioned replicas serve under the target without any balancing between them.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.suite.capacity_search import (
    MIN_KEEP_UP,
    TTFT_P90_TARGET,
    RateSearch,
    Verdict,
    grid_up,
    judge,
    replica_bound,
    saturated_throughput,
)
from benchmarks.suite.capacity_trial import (
    StartTrial,
    event_fleet_command,
    on_fleet,
    precise_gateway,
    run_trial,
)
from benchmarks.suite.commands import PEERS, SimSpec, time_scaled_gateway_flags
from benchmarks.suite.epp import GROUP_ZIPF, bench_command, replica_capacity, zipf_config
from benchmarks.suite.epp import zipf_routing_settings as skewed_settings
from benchmarks.suite.harness import sim_command, slug
from benchmarks.suite.model import RunRow, Section
from benchmarks.suite.settings import RoutingSettings
from benchmarks.suite.stack import direct, gateway, peer
from poolgate.bench import BenchConfig, BenchError, BenchResult, LoadConfig
from poolgate.sim.profiles import PROFILES

SECTION = "capacity"
PARTITIONED = "8 partitioned replicas"
POOLGATE_DEFAULT = "poolgate default"
POOLGATE_PRECISE = "poolgate precise"  # on a fleet publishing KV events
ONE_REPLICA = "one replica"  # the ceiling's rate search
SATURATED = "one replica, saturated"  # the ceiling's closed-loop run
# A round-robin baseline from one peer is enough: the policy is the same in both.
BASELINE_PEER = ("vllm-router", "round_robin")


@dataclass(frozen=True, slots=True)
class CapacitySettings:
    """The workload and fleet (`routing`, whose rate and duration are unused), the search and
    the ceiling's measurement."""

    routing: RoutingSettings
    trial: float  # seconds of Poisson arrivals per trial
    warmup: int  # the harness's warm-up requests before a trial, after one of every group
    start: float  # requests/s of the first trial
    resolution: float  # requests/s
    replica_trial: float  # seconds per trial of the one-replica search
    replica_start: float
    replica_resolution: float
    saturated_seconds: float  # the closed-loop run on one replica
    rounds: int = 1  # independent searches per front, their steps interleaved; the median counts
    growth: float = 2.0

    @property
    def fleet(self) -> SimSpec:
        return self.routing.fleet

    @property
    def replica(self) -> SimSpec:
        """One replica of the fleet, same profile, cache and batch slots."""
        return dataclasses.replace(self.fleet, replicas=1)

    @property
    def saturating_concurrency(self) -> int:
        """Requests kept outstanding on one replica: twice its batch slots, so it never idles."""
        return 2 * (self.fleet.max_num_seqs or 8)


def capacity_settings(quick: bool) -> CapacitySettings:
    return CapacitySettings(
        routing=skewed_settings(quick), trial=10.0 if quick else 20.0,
        warmup=0, start=4.0, resolution=2.0 if quick else 1.0,
        replica_trial=10.0 if quick else 30.0, replica_start=0.5,
        replica_resolution=0.25 if quick else 0.125,
        saturated_seconds=10.0 if quick else 30.0, rounds=1 if quick else 3)


@dataclass(frozen=True, slots=True)
class CapacityFront:
    """A front whose capacity is searched, and how a trial starts its fleet and it."""

    name: str
    kind: str  # "poolgate" or "peer"
    start: StartTrial


def fronts(s: CapacitySettings, peers_venv: Path | None, cwd: Path) -> list[CapacityFront]:
    """poolgate's default and precise profiles, each peer's cache_aware and one round_robin
    baseline."""
    ts = s.fleet.time_scale
    out = [CapacityFront(POOLGATE_DEFAULT, "poolgate",
                         on_fleet(gateway("default", time_scaled_gateway_flags(ts)))),
           CapacityFront(POOLGATE_PRECISE, "poolgate", precise_gateway(ts))]
    if peers_venv is None:
        return out
    policies = [(p, "cache_aware") for p in PEERS]
    policies += [(p, policy) for p in PEERS for policy in p.policies
                 if (p.name, policy) == BASELINE_PEER]
    out += [CapacityFront(f"{p.name} {policy}", "peer", on_fleet(peer(p, peers_venv, policy, cwd)))
            for p, policy in policies]
    return out


def step_order(names: Sequence[str], step: int) -> list[str]:
    """The fronts of one search step, rotated by one place per step."""
    if not names:
        return []
    k = step % len(names)
    return [*names[k:], *names[:k]]


def trial_name(front: str, rate: float) -> str:
    return f"{front} @ {rate:g} req/s"


# How the report shows the group warm-up before every trial.
WARMUP_SHOWN = ("# then, through the front: one request of every group, all at once "
                "(benchmarks/suite/capacity_warmup.py), and the trial:")


def shown_command(config: BenchConfig) -> str:
    """The `poolgate bench` line of a trial (its rate shown as RATE) or of the closed-loop run."""
    ld = config.load
    # Trials read no replica's queue (bench_command shows the routing runs' scraping).
    text = bench_command(config).replace(
        f" --scrape-url http://REPLICA/metrics ... --scrape-interval {config.scrape_interval:g}", "")
    if ld.rate is not None:
        return text.replace(f"--rate {ld.rate:g}", "--rate RATE")
    return text.replace(f"--requests {ld.requests}", f"--duration {ld.duration:g}")


def trial_config(base: BenchConfig, rate: float, duration: float, warmup: int) -> BenchConfig:
    return dataclasses.replace(base, load=LoadConfig(rate=rate, duration=duration, warmup=warmup,
                                                     arrival="poisson"))


@dataclass
class Trial:
    """One judged trial and its row."""

    verdict: Verdict
    row: RunRow

    def to_dict(self) -> dict[str, Any]:
        r = self.row
        return {**self.verdict.to_dict(), "ttft_p50": r.ttft_p50, "ttft_p99": r.ttft_p99,
                "output_throughput": r.output_throughput,
                "request_throughput": r.request_throughput,
                "prefix_cache_hit_rate": r.prefix_cache_hit_rate, "requests": r.requests,
                "lateness_p99": r.lateness_p99}


@dataclass
class Searched:
    """A front's search: its trials in order and, if one passed, the highest passing rate."""

    name: str
    kind: str
    search: RateSearch
    label: str = ""  # the search's own name when a front has several (rounds); else `name`
    trials: list[Trial] = field(default_factory=list)
    broken: str | None = None  # why the search stopped early (the front did not start, ...)

    @property
    def key(self) -> str:
        return self.label or self.name

    @property
    def best(self) -> Trial | None:
        passed = [t for t in self.trials if t.verdict.passed]
        return max(passed, key=lambda t: t.verdict.rate, default=None)

    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return {"kind": self.kind, "max_rate": None if best is None else best.verdict.rate,
                "first_failure": self.search.failed_at, "reached_cap": self.search.reached_cap,
                "cap": self.search.cap, "broken": self.broken,
                "trials": [t.to_dict() for t in self.trials]}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@dataclass
class Collected:
    """What the trials of some searches showed on the way: commands and notes."""

    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def command(self, shown: str | None) -> None:
        if shown and shown not in self.commands:
            self.commands.append(shown)


async def _trial(searched: Searched, start: StartTrial, rate: float, spec: SimSpec,
                 config: BenchConfig, workdir: Path, out: Collected) -> None:
    """One trial of `searched` at `rate`, judged and fed to its search; a front that does not
    start (or whose warm-up fails) ends its search with a note."""
    name = trial_name(searched.key, rate)
    try:
        row, result, front = await run_trial(name, searched.kind, start, spec, config,
                                             workdir / slug(name))
    except BenchError as e:
        lines = str(e).strip().splitlines()
        searched.broken = lines[0] if lines else type(e).__name__
        out.notes.append(f"{searched.key}: stopped at {rate:g} req/s: {searched.broken}")
        return
    out.command(front.shown)
    verdict = judge(rate, result.records, row.ttft_p90)
    searched.search.record(rate, verdict.passed)
    searched.trials.append(Trial(verdict, row))
    _say(f"  {name}: {'pass' if verdict.passed else 'fail: ' + verdict.reason}")


async def search_all(items: list[tuple[Searched, StartTrial]], spec: SimSpec, base: BenchConfig,
                     duration: float, warmup: int, workdir: Path) -> Collected:
    """Run every search to its end, one trial of each live search per step (in an order rotated
    per step), a fresh fleet per trial."""
    out = Collected()
    by_key = {s.key: (s, start) for s, start in items}
    step = 0
    while live := [s.key for s, _ in items if s.broken is None and not s.search.done]:
        order = step_order(live, step)
        rates = {key: by_key[key][0].search.next_rate() for key in order}
        _say(f"  step {step + 1}: " + ", ".join(f"{k} {r:g}" for k, r in rates.items() if r))
        for key, rate in rates.items():
            assert rate is not None
            searched, start = by_key[key]
            await _trial(searched, start, rate, spec, trial_config(base, rate, duration, warmup),
                         workdir / f"step-{step + 1}", out)
        step += 1
    return out


def partition_config(s: CapacitySettings) -> BenchConfig:
    """The workload one replica gets from a perfect partition: its share of the groups (two of
    sixteen on eight replicas), uniform, same prompt and output lengths."""
    routing = dataclasses.replace(s.routing, groups=max(1, s.routing.groups // s.fleet.replicas))
    config = zipf_config(routing)
    return dataclasses.replace(config, workload=dataclasses.replace(config.workload,
                                                                    group_zipf=0.0))


@dataclass
class Ceiling:
    """What one replica serves with every request cached, and the analytic bound."""

    saturated: float | None = None  # requests/s, closed loop
    saturated_row: RunRow | None = None
    analytic: float | None = None  # requests/s, from the simulator's step-time model
    uncached_tokens: float | None = None  # prompt tokens per request the replica prefilled
    partitioned: Searched | None = None
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


async def measure_ceiling(s: CapacitySettings, workdir: Path) -> Ceiling:
    """One replica, client direct: saturated throughput, then its own rate search."""
    ceiling = Ceiling(analytic=replica_capacity(s.routing))
    base = partition_config(s)
    closed = dataclasses.replace(base, load=LoadConfig(
        concurrency=s.saturating_concurrency, duration=s.saturated_seconds, warmup=0))
    ceiling.commands += [sim_command(s.replica), WARMUP_SHOWN, shown_command(closed)]
    try:
        row, result, _ = await run_trial(SATURATED, "ceiling", on_fleet(direct), s.replica,
                                         closed, workdir / "saturated")
    except BenchError as e:
        ceiling.notes.append(f"{SATURATED}: not measured: {str(e).strip().splitlines()[0]}")
    else:
        # The first quarter is the start-up; until the end every slot is kept busy.
        ceiling.saturated = saturated_throughput(result.records, s.saturated_seconds / 4,
                                                 s.saturated_seconds)
        ceiling.saturated_row = row
        ceiling.uncached_tokens, ceiling.analytic = _analytic(s, result)
    one = ceiling.saturated or ceiling.analytic
    if one is None:
        ceiling.notes.append("the one-replica search did not run: no throughput to cap it")
        return ceiling
    cap = max(grid_up(one, s.replica_resolution), s.replica_start)
    searched = Searched(ONE_REPLICA, "direct",
                        RateSearch(s.replica_start, s.replica_resolution, cap, s.growth))
    _say(f"  one replica saturated: {ceiling.saturated or 0:.2f} req/s "
         f"(analytic {ceiling.analytic or 0:.2f}); its rate search up to {cap:g}")
    found = await search_all([(searched, on_fleet(direct))], s.replica, base, s.replica_trial,
                             s.warmup, workdir / "one-replica")
    ceiling.partitioned = searched
    ceiling.notes += found.notes
    ceiling.commands.append(shown_command(trial_config(base, s.replica_start, s.replica_trial,
                                                       s.warmup)))
    return ceiling


def _analytic(s: CapacitySettings, result: BenchResult) -> tuple[float | None, float | None]:
    """(uncached prompt tokens per request, the step-time model's requests/s of one replica with
    that much prefill per request); the model without prefill when the run has no usage."""
    summary = result.summary()
    profile = PROFILES.get(s.fleet.profile)
    if profile is None or not summary.completed or not summary.total_prompt_tokens:
        return None, replica_capacity(s.routing)
    uncached = (summary.total_prompt_tokens - summary.total_cached_tokens) / summary.completed
    slots = s.fleet.max_num_seqs or profile.max_num_seqs
    return uncached, replica_bound(profile, slots, s.fleet.time_scale, s.routing.output_len,
                                   uncached)


def fleet_cap(s: CapacitySettings, ceiling: Ceiling) -> float:
    """The highest rate any front is tried at: the fleet's throughput bound on the search's
    grid (a front that passes there is at the ceiling), or 8x the start without one."""
    one = ceiling.saturated or ceiling.analytic
    if one is None:
        return s.start * 8
    return max(grid_up(one * s.fleet.replicas, s.resolution), s.start)


async def run(s: CapacitySettings, workdir: Path, peers_venv: Path | None, cwd: Path) -> Section:
    """The ceiling, then every front's search, interleaved."""
    started = time.monotonic()
    _say("  the ceiling: one replica, every request cached")
    ceiling = await measure_ceiling(s, workdir / "ceiling")
    cap = fleet_cap(s, ceiling)
    items = [(Searched(f.name, f.kind, RateSearch(s.start, s.resolution, cap, s.growth),
                       label=f"{f.name} (round {n + 1})" if s.rounds > 1 else ""), f.start)
             for n in range(s.rounds) for f in fronts(s, peers_venv, cwd)]
    base = zipf_config(s.routing)
    found = await search_all(items, s.fleet, base, s.trial, s.warmup, workdir / "fronts")
    notes = list(dict.fromkeys([*ceiling.notes, *found.notes]))
    if peers_venv is None:
        notes.append("the peer routers are not installed (.venv-peers): run `make bench-peers` "
                     "once, then this section again, to add their rows")
    results = by_front([x for x, _ in items])
    shown_trial = shown_command(trial_config(base, s.start, s.trial, s.warmup))
    return Section(
        name=SECTION, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=_settings(s, cap),
        commands=[sim_command(s.fleet), event_fleet_command(s.fleet), WARMUP_SHOWN, shown_trial,
                  *found.commands, *ceiling.commands],
        rows=_rows(results, ceiling), notes=notes,
        extra={"fronts": {name: r.to_dict() for name, r in results.items()},
               "ceiling": _ceiling_dict(s, ceiling)})


def median_low(rates: Sequence[float | None]) -> float | None:
    """The median of the rounds' highest passing rates, a rate one of them found (the lower
    middle of an even count); a round where nothing passed counts as the lowest."""
    ordered = sorted(rates, key=lambda r: -math.inf if r is None else r)
    return ordered[(len(ordered) - 1) // 2] if ordered else None


@dataclass
class FrontResult:
    """A front's searches (one per round) and the one whose result is the median."""

    name: str
    kind: str
    rounds: list[Searched]

    @property
    def rates(self) -> list[float | None]:
        return [None if (b := x.best) is None else b.verdict.rate for x in self.rounds]

    @property
    def median(self) -> Searched:
        """The first round whose highest passing rate is the median."""
        middle = median_low(self.rates)
        return next(x for x, r in zip(self.rounds, self.rates, strict=True) if r == middle)

    def to_dict(self) -> dict[str, Any]:
        """The median round's search, with every round's highest rate and search."""
        return {**self.median.to_dict(), "max_rates": self.rates,
                "rounds": [x.to_dict() for x in self.rounds]}


def by_front(searched: Sequence[Searched]) -> dict[str, FrontResult]:
    """The searches grouped by front, in the order the fronts first appear."""
    out: dict[str, FrontResult] = {}
    for x in searched:
        out.setdefault(x.name, FrontResult(x.name, x.kind, [])).rounds.append(x)
    return out


def _rows(results: Mapping[str, FrontResult], ceiling: Ceiling) -> list[RunRow]:
    """Each front's row at its highest passing rate in its median round, then the ceiling's
    measured runs."""
    rows = [dataclasses.replace(best.row, name=name)
            for name, r in results.items() if (best := r.median.best) is not None]
    if ceiling.saturated_row is not None:
        rows.append(dataclasses.replace(ceiling.saturated_row, kind="ceiling"))
    if ceiling.partitioned is not None and (best := ceiling.partitioned.best) is not None:
        rows.append(dataclasses.replace(best.row, name=ceiling.partitioned.name,
                                        kind="ceiling"))
    return rows


def _ceiling_dict(s: CapacitySettings, c: Ceiling) -> dict[str, Any]:
    n = s.fleet.replicas
    part = c.partitioned.to_dict() if c.partitioned is not None else None
    best = c.partitioned.best if c.partitioned is not None else None
    return {"replicas": n, "concurrency": s.saturating_concurrency,
            "one_replica_saturated": c.saturated, "one_replica_analytic": c.analytic,
            "uncached_tokens_per_request": c.uncached_tokens,
            "fleet_saturated": None if c.saturated is None else c.saturated * n,
            "fleet_analytic": None if c.analytic is None else c.analytic * n,
            "one_replica_search": part,
            "fleet_partitioned": None if best is None else best.verdict.rate * n}


def _settings(s: CapacitySettings, cap: float) -> dict[str, Any]:
    f, r = s.fleet, s.routing
    return {"replicas": f.replicas, "sim_profile": f.profile, "time_scale": f.time_scale,
            "kv_cache_blocks": f.kv_cache_blocks, "max_num_seqs": f.max_num_seqs,
            "groups": r.groups, "group_zipf": GROUP_ZIPF, "prompts_per_group": r.prompts_per_group,
            "system_prompt_len": r.system_prompt_len, "question_len": r.question_len,
            "output_len": r.output_len, "seed": r.seed, "api": "chat", "stream": True,
            "ttft_p90_target": TTFT_P90_TARGET, "min_keep_up": MIN_KEEP_UP,
            "trial": s.trial, "warmup": s.warmup, "start": s.start, "growth": s.growth,
            "resolution": s.resolution, "cap": cap, "replica_trial": s.replica_trial,
            "replica_resolution": s.replica_resolution,
            "saturated_seconds": s.saturated_seconds, "rounds": s.rounds}

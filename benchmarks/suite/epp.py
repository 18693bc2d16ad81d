"""Issue 15: `poolgate epp` behind a real Envoy, next to `poolgate serve`, Envoy alone and the
peer routers.

`epp-cost`: what every process in front of the fleet spends per request, and the latency it adds
over calling the replica directly, on the overhead section's tiny non-streamed completions (a
zero-latency replica) and on streamed completions (a replica with the H100 profile's decode
steps, so every token is its own chunk); Envoy + picker once per response body mode
`poolgate envoy-config` offers, which prices the modes and each streamed chunk.
`epp-routing`: TTFT and throughput on the routing section's shared-prefix workload with
Zipf-skewed group popularity, at a rate where pure prefix affinity overloads one replica.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.suite.commands import PEERS, SimSpec, time_scaled_gateway_flags
from benchmarks.suite.epp_stack import (
    DEFAULT_BODY_MODE,
    PICKER,
    CpuReading,
    Stack,
    StartStack,
    body_modes_supported,
    cpu_between,
    envoy_epp,
    envoy_round_robin,
    envoy_version,
    no_front,
    read_cpu,
    read_ext_proc_counters,
    single,
)
from benchmarks.suite.harness import sim_command, slug
from benchmarks.suite.model import RunRow, Section, median_row
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.settings import RoutingSettings, routing_settings
from benchmarks.suite.stack import Fleet, gateway, peer, start_fleet
from poolgate.bench import (
    BenchConfig,
    BenchError,
    LengthSpec,
    LoadConfig,
    Target,
    WorkloadConfig,
    run_benchmark,
)
from poolgate.sim.profiles import PROFILES

BODY_MODES = ("FULL_DUPLEX_STREAMED", "STREAMED", "NONE")
NONE_BODY = "NONE"
# Zipf exponent of the routing workload's group popularity: with 16 groups the hottest gets
# 1 / H(16, 0.85) = 24.7 % of the requests.
GROUP_ZIPF = 0.85
DIRECT = "direct"
ENVOY_RR = "Envoy round robin"
SERVE = "poolgate serve"


def epp_row(mode: str) -> str:
    """The front name of Envoy + picker with one response body mode."""
    return f"Envoy + poolgate epp ({mode})"


@dataclass(frozen=True, slots=True)
class CostSettings:
    """Closed-loop completions, tiny non-streamed ones and streamed ones, each at 64 in flight
    and one at a time."""

    tiny_fleet: SimSpec
    stream_fleet: SimSpec
    requests: int  # tiny, 64 in flight
    stream_requests: int  # streamed, 64 in flight
    c1_requests: int
    stream_c1_requests: int
    warmup: int
    rounds: int = 1
    concurrency: int = 64
    input_len: int = 8
    stream_output_len: int = 16
    seed: int = 0


def cost_settings(quick: bool) -> CostSettings:
    return CostSettings(
        tiny_fleet=SimSpec(replicas=1, profile="zero"),
        stream_fleet=SimSpec(replicas=1, profile="h100-llama3-8b"),
        requests=800 if quick else 3000,
        stream_requests=400 if quick else 1500,
        c1_requests=100 if quick else 300,
        stream_c1_requests=20 if quick else 40,
        warmup=64 if quick else 200,
        rounds=1 if quick else 2,
    )


# Batch slots per replica in the routing part. With the simulator's default (256) one simulated
# H100 absorbs the hottest group at the suite's 26 requests/s by batching (prefix-only tied the
# default profile there), so no router is stressed; with 8 slots a replica serves about 3.5
# requests/s (`replica_capacity`), the fleet about 28, and at 20 requests/s the hottest group
# alone (about 4.4) is more than one replica serves.
ZIPF_MAX_NUM_SEQS = 8
ZIPF_RATE = 20.0


def zipf_routing_settings(quick: bool) -> RoutingSettings:
    """The routing section's fleet and workload (its --quick duration when quick), with fewer
    batch slots per replica and a rate at which pure prefix affinity overloads one replica."""
    base = routing_settings(quick)
    return dataclasses.replace(
        base, fleet=dataclasses.replace(base.fleet, max_num_seqs=ZIPF_MAX_NUM_SEQS),
        rate=ZIPF_RATE, profiles=("default", "prefix-only"))


def replica_capacity(s: RoutingSettings) -> float | None:
    """Requests/s of wall-clock time one replica of `s.fleet` serves with every batch slot busy
    and the prompt cached: slots / (output tokens x decode step time / time scale)."""
    profile = PROFILES.get(s.fleet.profile)
    slots = s.fleet.max_num_seqs or (profile.max_num_seqs if profile else None)
    if profile is None or not slots:
        return None
    step = profile.step_time(slots, 0)
    return slots * s.fleet.time_scale / (s.output_len * step) if step > 0 else None


@dataclass(frozen=True, slots=True)
class Workload:
    """One load of the cost section: its key in the report and its config."""

    key: str
    title: str
    config: BenchConfig
    fleet: SimSpec


def cost_workloads(s: CostSettings) -> list[Workload]:
    def config(stream: bool, concurrency: int, requests: int, warmup: int) -> BenchConfig:
        out = s.stream_output_len if stream else 1
        return BenchConfig(
            workload=WorkloadConfig(kind="random", seed=s.seed, model=s.tiny_fleet.model,
                                    input_len=LengthSpec.fixed(s.input_len),
                                    output_len=LengthSpec.fixed(out)),
            load=LoadConfig(concurrency=concurrency, requests=requests, warmup=warmup),
            api="completions", stream=stream, timeout=60.0)

    c = s.concurrency
    return [
        Workload("tiny", f"tiny non-streamed completions, {c} in flight",
                 config(False, c, s.requests, s.warmup), s.tiny_fleet),
        Workload("tiny c=1", "tiny non-streamed completions, one at a time",
                 config(False, 1, s.c1_requests, 20), s.tiny_fleet),
        Workload("stream", f"streamed completions ({s.stream_output_len} tokens), {c} in flight",
                 config(True, c, s.stream_requests, s.warmup), s.stream_fleet),
        Workload("stream c=1", f"streamed completions ({s.stream_output_len} tokens), one at a "
                               "time", config(True, 1, s.stream_c1_requests, 5), s.stream_fleet),
    ]


def zipf_config(s: RoutingSettings) -> BenchConfig:
    """The routing section's open-loop shared-prefix chat with Zipf-skewed groups."""
    return BenchConfig(
        workload=WorkloadConfig(kind="shared-prefix", seed=s.seed, model=s.fleet.model,
                                groups=s.groups, prompts_per_group=s.prompts_per_group,
                                system_prompt_len=s.system_prompt_len, group_zipf=GROUP_ZIPF,
                                question_len=LengthSpec.fixed(s.question_len),
                                output_len=LengthSpec.fixed(s.output_len)),
        load=LoadConfig(rate=s.rate, duration=s.duration, warmup=s.warmup, arrival="poisson"),
        api="chat", stream=True, timeout=600.0, scrape_interval=s.scrape_interval)


def bench_command(config: BenchConfig) -> str:
    """The `poolgate bench` line of `config` (CPU is read from /proc around the measured phase,
    per process, so no --cpu-pid)."""
    wl, ld = config.workload, config.load
    parts = ["poolgate bench --url URL", f"--model {wl.model}", f"--workload {wl.kind}",
             f"--seed {wl.seed}", f"--api {config.api}"]
    if wl.kind == "shared-prefix":
        parts += [f"--groups {wl.groups}", f"--prompts-per-group {wl.prompts_per_group}",
                  f"--system-prompt-len {wl.system_prompt_len}", f"--group-zipf {wl.group_zipf:g}",
                  f"--question-len {wl.question_len}"]
    else:
        parts.append(f"--input-len {wl.input_len}")
    parts += [f"--output-len {wl.output_len}", "--stream" if config.stream else "--no-stream"]
    if ld.rate is not None:
        parts += [f"--rate {ld.rate:g} --arrival {ld.arrival} --duration {ld.duration:g}"]
    else:
        parts += [f"--concurrency {ld.concurrency} --requests {ld.requests}"]
    parts.append(f"--warmup {ld.warmup}")
    if wl.kind == "shared-prefix":  # the routing runs sample every replica's queue
        parts.append(f"--scrape-url http://REPLICA/metrics ... --scrape-interval "
                     f"{config.scrape_interval:g}")
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Front:
    """A target of the section: its name, its kind and how to start it."""

    name: str
    kind: str  # "direct", "envoy", "epp", "poolgate" or "peer"
    start: StartStack


@dataclass
class Measured:
    """One run: its row and what the row cannot hold (CPU by process, Envoy's counters)."""

    row: RunRow
    front: str
    workload: str
    cpu_us: dict[str, float] = field(default_factory=dict)
    ext_proc: dict[str, float] | None = None  # per request
    sim_cpu_us: float | None = None
    sim_share: float | None = None
    group_shares: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"front": self.front, "workload": self.workload, "cpu_us": self.cpu_us,
                "ext_proc_per_request": self.ext_proc, "group_shares": self.group_shares}


def _warmup_only(config: BenchConfig) -> BenchConfig:
    """The warm-up `run_benchmark` sends for `config` (same stream, same concurrency), and a
    single measured request: the measured run then goes without one, so the CPU read around it
    covers measured requests only."""
    load = LoadConfig(concurrency=config.load.concurrency or 4, requests=1,
                      warmup=config.load.warmup)
    return dataclasses.replace(config, load=load, scrape_urls=())


def _cpu(processes: tuple[tuple[str, int], ...]) -> dict[str, CpuReading]:
    return {role: read_cpu(pid) for role, pid in processes}


async def measure(front: Front, workload: str, stack: Stack, fleet: Fleet,
                  config: BenchConfig) -> Measured:
    """Warm up, then one measured run, with every front process's CPU and Envoy's ext_proc
    counters read around it; the row is `FRONT [WORKLOAD]` (just the front without one)."""
    name = f"{front.name} [{workload}]" if workload else front.name
    print(f"  {name}: starting", file=sys.stderr, flush=True)
    target = Target(name, stack.url)
    if config.load.warmup:
        await run_benchmark(_warmup_only(config), target)
    config = dataclasses.replace(config, load=dataclasses.replace(config.load, warmup=0))
    counters = await read_ext_proc_counters(stack.envoy_admin) if stack.envoy_admin else None
    before, sim_before, wall = _cpu(stack.processes), read_cpu(fleet.process.pid), time.monotonic()
    result = await run_benchmark(config, target)
    wall = time.monotonic() - wall
    after = _cpu(stack.processes)
    sim_used = cpu_between(sim_before, read_cpu(fleet.process.pid))
    n = len(result.records)
    cpu = {role: cpu_between(before[role], after[role]) * 1e6 / n for role in before} if n else {}
    row = RunRow.of(name, front.kind, result, stack.shown[0] if stack.shown else "")
    if cpu:
        row = dataclasses.replace(row, cpu_us_per_request=sum(cpu.values()))
    ext_proc = None
    if counters is not None and stack.envoy_admin and n:
        now = await read_ext_proc_counters(stack.envoy_admin)
        ext_proc = {k: (now[k] - counters[k]) / n for k in now}
    groups = Counter(r.group for r in result.records if r.group is not None)
    print(f"  {name}: {row.completed}/{row.requests} ok, {row.request_throughput:.1f} req/s, "
          f"front CPU {row.cpu_us_per_request or 0:.0f} µs/req", file=sys.stderr, flush=True)
    return Measured(row, front.name, workload, cpu, ext_proc,
                    sim_used * 1e6 / n if n else None, sim_used / wall if wall > 0 else None,
                    [groups[g] / n for g in sorted(groups)] if groups else [])


@dataclass
class Runs:
    """The measured runs of a section, in order, and what was noted on the way."""

    measured: list[Measured] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add_commands(self, stack: Stack) -> None:
        self.commands.extend(c for c in stack.shown if c not in self.commands)

    def skip(self, name: str, error: BenchError) -> None:
        lines = str(error).strip().splitlines()
        self.notes.append(f"{name}: not measured: {lines[0] if lines else type(error).__name__}")


async def _run_front(front: Front, workloads: list[Workload], fleet: Fleet, log_dir: Path,
                     runs: Runs) -> None:
    """Start `front` once in front of `fleet` and measure every workload through it."""
    with ProcessGroup(log_dir) as group:
        try:
            stack = await front.start(group, fleet)
            runs.add_commands(stack)
            for wl in workloads:
                runs.measured.append(await measure(front, wl.key, stack, fleet, wl.config))
        except BenchError as e:
            runs.skip(front.name, e)


async def _cost_round(fronts: list[Front], workloads: list[Workload], workdir: Path,
                      runs: Runs) -> None:
    """Every front on each fleet (one fleet at a time; each front stopped before the next)."""
    fleets = list(dict.fromkeys(wl.fleet for wl in workloads))
    for spec in fleets:
        mine = [wl for wl in workloads if wl.fleet == spec]
        where = workdir / f"{spec.profile}-fleet"
        with ProcessGroup(where / "logs") as fleet_group:
            fleet = await start_fleet(fleet_group, spec, where)
            for front in fronts:
                await _run_front(front, mine, fleet, where / "logs" / slug(front.name), runs)


def cost_fronts(modes: tuple[str | None, ...], peers_venv: Path | None, cwd: Path) -> list[Front]:
    """direct, Envoy alone, Envoy + picker per body mode, `poolgate serve`, the peers."""
    fronts = [Front(DIRECT, "direct", no_front), Front(ENVOY_RR, "envoy", envoy_round_robin())]
    fronts += [Front(epp_row(m or DEFAULT_BODY_MODE), "epp", envoy_epp("default", m))
               for m in modes]
    fronts.append(Front(SERVE, "poolgate", single(SERVE, gateway("default"))))
    fronts += _peer_fronts(peers_venv, cwd, ("round_robin", "cache_aware"))
    return fronts


def _peer_fronts(venv: Path | None, cwd: Path, policies: tuple[str, ...]) -> list[Front]:
    if venv is None:
        return []
    return [Front(f"{p.name} {policy}", "peer", single(p.name, peer(p, venv, policy, cwd)))
            for p in PEERS for policy in policies if policy in p.policies]


def peers_available(venv: Path) -> bool:
    return all(p.executable(venv).exists() for p in PEERS)


def _combine(rounds: list[Runs]) -> Runs:
    """One run per name: median rows and figures over the rounds."""
    if len(rounds) == 1:
        return rounds[0]
    out = Runs()
    by_name: dict[str, list[Measured]] = {}
    for r in rounds:
        for m in r.measured:
            by_name.setdefault(m.row.name, []).append(m)
        out.commands.extend(c for c in r.commands if c not in out.commands)
        out.notes.extend(n for n in r.notes if n not in out.notes)
    for found in by_name.values():
        first = found[0]
        out.measured.append(Measured(
            median_row([m.row for m in found]), first.front, first.workload,
            _median_dict([m.cpu_us for m in found]),
            _median_dict([m.ext_proc for m in found if m.ext_proc is not None]) or None,
            _median([m.sim_cpu_us for m in found]), _median([m.sim_share for m in found]),
            first.group_shares))
    return out


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _median_dict(dicts: list[dict[str, float]]) -> dict[str, float]:
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    return {k: statistics.median([d[k] for d in dicts if k in d]) for k in keys}


def _section(name: str, started: float, settings: dict[str, Any], runs: Runs,
             commands: list[str], extra: dict[str, Any]) -> Section:
    return Section(
        name=name, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=settings,
        commands=commands + runs.commands, rows=[m.row for m in runs.measured], notes=runs.notes,
        extra={"runs": {m.row.name: m.to_dict() for m in runs.measured},
               "sim_cpu_us_per_request": {m.row.name: m.sim_cpu_us for m in runs.measured
                                          if m.sim_cpu_us is not None},
               "sim_cpu_share": {m.row.name: m.sim_share for m in runs.measured
                                 if m.sim_share is not None},
               **extra})


async def cost(s: CostSettings, workdir: Path, peers_venv: Path | None, cwd: Path) -> Section:
    """Issue 15, item 5: CPU per request of every process and the added latency."""
    started = time.monotonic()
    supported = body_modes_supported()
    modes: tuple[str | None, ...] = (None, *BODY_MODES[1:]) if supported else (None,)
    fronts = cost_fronts(modes, peers_venv, cwd)
    workloads = cost_workloads(s)
    rounds = []
    for n in range(s.rounds):
        if s.rounds > 1:
            print(f"  round {n + 1} of {s.rounds}", file=sys.stderr, flush=True)
        runs = Runs()
        await _cost_round(fronts, workloads, workdir / f"round-{n}", runs)
        rounds.append(runs)
    runs = _combine(rounds)
    if not supported:
        runs.notes.append("`poolgate envoy-config` has no --response-body-mode in this build: "
                          f"only its default ({DEFAULT_BODY_MODE}) was measured")
    if peers_venv is None:
        runs.notes.append("the peer routers are not installed (.venv-peers): run `make "
                          "bench-peers` once, then this section again, to add their rows")
    commands = [sim_command(s.tiny_fleet), sim_command(s.stream_fleet),
                *dict.fromkeys(bench_command(wl.config) for wl in workloads)]
    settings = {"concurrency": s.concurrency, "requests": s.requests,
                "stream_requests": s.stream_requests, "c1_requests": s.c1_requests,
                "stream_c1_requests": s.stream_c1_requests, "warmup": s.warmup,
                "input_len": s.input_len, "stream_output_len": s.stream_output_len,
                "api": "completions", "seed": s.seed, "rounds": s.rounds,
                "tiny_fleet": f"{s.tiny_fleet.replicas}x {s.tiny_fleet.profile}",
                "stream_fleet": f"{s.stream_fleet.replicas}x {s.stream_fleet.profile}",
                "envoy": envoy_version(), "envoy_concurrency": 1}
    extra = {"workloads": [{"key": wl.key, "title": wl.title, "stream": wl.config.stream}
                           for wl in workloads],
             "body_modes": [m or DEFAULT_BODY_MODE for m in modes]}
    return _section("epp-cost", started, settings, runs, commands, extra)


def routing_fronts(profiles: tuple[str, ...], time_scale: float, peers_venv: Path | None,
                   cwd: Path, modes: bool = False) -> list[Front]:
    """Envoy + picker (the rendered bootstrap, and with `modes` again without response
    bodies) and `poolgate serve` on the first profile, `poolgate serve` on the others, and each
    peer's cache-aware policy."""
    flags = time_scaled_gateway_flags(time_scale)
    first = profiles[0]
    fronts = [Front(f"Envoy + poolgate epp {first}", "epp", envoy_epp(first, None, flags))]
    if modes:
        fronts.append(Front(f"Envoy + poolgate epp {first} ({NONE_BODY})", "epp",
                            envoy_epp(first, NONE_BODY, flags)))
    fronts += [Front(f"{SERVE} {p}", "poolgate", single(SERVE, gateway(p, flags)))
               for p in profiles]
    return fronts + _peer_fronts(peers_venv, cwd, ("cache_aware",))


async def routing(s: RoutingSettings, workdir: Path, peers_venv: Path | None,
                  cwd: Path) -> Section:
    """Issue 15, item 6: routing quality on Zipf-skewed shared prefixes, a fresh fleet each."""
    started = time.monotonic()
    config = zipf_config(s)
    runs = Runs()
    fronts = routing_fronts(s.profiles, s.fleet.time_scale, peers_venv, cwd,
                            body_modes_supported())
    for front in fronts:
        where = workdir / slug(front.name)
        with ProcessGroup(where / "logs") as group:
            try:
                fleet = await start_fleet(group, s.fleet, where)
                stack = await front.start(group, fleet)
                runs.add_commands(stack)
                scraped = dataclasses.replace(config, scrape_urls=fleet.metrics_urls)
                runs.measured.append(await measure(front, "", stack, fleet, scraped))
            except BenchError as e:
                runs.skip(front.name, e)
    if peers_venv is None:
        runs.notes.append("the peer routers are not installed (.venv-peers): run `make "
                          "bench-peers` once, then this section again, to add their rows")
    shares = next((m.group_shares for m in runs.measured if m.group_shares), [])
    f = s.fleet
    capacity = replica_capacity(s)
    settings = {"replicas": f.replicas, "sim_profile": f.profile, "time_scale": f.time_scale,
                "kv_cache_blocks": f.kv_cache_blocks, "max_num_seqs": f.max_num_seqs,
                "replica_capacity": None if capacity is None else round(capacity, 2),
                "rate": s.rate, "duration": s.duration,
                "warmup": s.warmup, "groups": s.groups, "group_zipf": GROUP_ZIPF,
                "prompts_per_group": s.prompts_per_group,
                "system_prompt_len": s.system_prompt_len, "question_len": s.question_len,
                "output_len": s.output_len, "seed": s.seed, "api": "chat", "stream": True}
    return _section("epp-routing", started, settings, runs,
                    [sim_command(s.fleet), bench_command(config)],
                    {"group_shares": shares, "baseline": f"{SERVE} {s.profiles[0]}",
                     "picker": PICKER})

"""The experiments: gateway overhead, routing quality, pick cost, and the same against peers."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.suite.checks import (
    DIRECT,
    DIRECT_C1,
    GATEWAY,
    c1_row,
    floor_row,
    pinned_row,
    profile_row,
)
from benchmarks.suite.commands import PEERS, time_scaled_gateway_flags
from benchmarks.suite.compiled import ROOT, build_compiled, compiled_env
from benchmarks.suite.harness import (
    Outcome,
    RunSpec,
    fresh_fleet_each,
    shared_fleet,
    sim_command,
)
from benchmarks.suite.model import Section
from benchmarks.suite.pinning import can_pin
from benchmarks.suite.settings import OverheadSettings, PickSettings, RoutingSettings
from benchmarks.suite.stack import direct, gateway, peer
from poolgate.bench import BenchConfig, BenchError, LengthSpec, LoadConfig, WorkloadConfig

# The rows of poolgate built as `pip install .` builds it (the same name as saturation.py's).
COMPILED = " (mypyc)"


def overhead_config(s: OverheadSettings, concurrency: int, requests: int, warmup: int) -> BenchConfig:
    """Closed-loop tiny non-streaming completions (the seeded `random` workload)."""
    return BenchConfig(
        workload=WorkloadConfig(kind="random", seed=s.seed, model=s.fleet.model,
                                input_len=LengthSpec.fixed(s.input_len),
                                output_len=LengthSpec.fixed(s.output_len)),
        load=LoadConfig(concurrency=concurrency, requests=requests, warmup=warmup),
        api="completions", stream=False, timeout=60.0, cpu_children=True,
    )


def routing_config(s: RoutingSettings) -> BenchConfig:
    """Open-loop Poisson shared-prefix chat at `s.rate`, streamed, queues scraped."""
    return BenchConfig(
        workload=WorkloadConfig(kind="shared-prefix", seed=s.seed, model=s.fleet.model,
                                groups=s.groups, prompts_per_group=s.prompts_per_group,
                                system_prompt_len=s.system_prompt_len,
                                question_len=LengthSpec.fixed(s.question_len),
                                output_len=LengthSpec.fixed(s.output_len)),
        load=LoadConfig(rate=s.rate, duration=s.duration, warmup=s.warmup, arrival="poisson"),
        api="chat", stream=True, timeout=600.0, scrape_interval=s.scrape_interval,
        cpu_children=True,
    )


def _bench_command(config: BenchConfig, url: str = "URL") -> str:
    """The equivalent `poolgate bench` command line of `config` (for the report)."""
    wl, ld = config.workload, config.load
    parts = ["poolgate bench", f"--url {url}", f"--model {wl.model}", f"--workload {wl.kind}",
             f"--seed {wl.seed}", f"--api {config.api}"]
    if wl.kind == "shared-prefix":
        parts += [f"--groups {wl.groups}", f"--prompts-per-group {wl.prompts_per_group}",
                  f"--system-prompt-len {wl.system_prompt_len}", f"--question-len {wl.question_len}"]
    else:
        parts.append(f"--input-len {wl.input_len}")
    parts.append(f"--output-len {wl.output_len}")
    parts.append("--stream" if config.stream else "--no-stream")
    if ld.rate is not None:
        parts += [f"--rate {ld.rate:g}", f"--arrival {ld.arrival}"]
    else:
        parts.append(f"--concurrency {ld.concurrency}")
    parts.append(f"--duration {ld.duration:g}" if ld.duration is not None
                 else f"--requests {ld.requests}")
    parts.append(f"--warmup {ld.warmup}")
    if config.scrape_urls or config.scrape_interval != 0.5:
        parts.append(f"--scrape-url http://REPLICA/metrics ... --scrape-interval {config.scrape_interval:g}")
    parts.append("--cpu-pid FRONT_PID --cpu-children")
    return " ".join(parts)


def _section(name: str, started: float, settings: dict[str, Any], commands: list[str],
             outcome: Outcome, notes: list[str], extra: dict[str, Any] | None = None) -> Section:
    return Section(
        name=name, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=settings,
        commands=commands + outcome.commands, rows=outcome.rows, notes=notes + outcome.notes,
        extra={"sim_cpu_us_per_request": outcome.sim_cpu_us_per_request,
               "sim_cpu_share": outcome.sim_cpu_share,
               **({"per_round": outcome.per_round} if outcome.per_round else {}),
               **(extra or {})},
    )


def _gateway_profile(name: str, supported: bool) -> str | None:
    """The `--scheduler-profile` to pass, or None when `poolgate serve` has no such flag yet."""
    return name if supported else None


def _overhead_runs(s: OverheadSettings, fronts: list[RunSpec]) -> list[RunSpec]:
    """Direct and each front at concurrency 64, again unloaded (concurrency 1), and pinned."""
    c1 = overhead_config(s, 1, s.c1_requests, 20)
    return [RunSpec(DIRECT, "direct", direct), *fronts,
            RunSpec(DIRECT_C1, "direct", direct, c1),
            *(dataclasses.replace(f, name=c1_row(f.name), config=c1) for f in fronts),
            *_pinned_runs(fronts)]


def _pinned_runs(fronts: list[RunSpec]) -> list[RunSpec]:
    """Direct and each front again with client + simulator on one CPU and the front on another
    (none where CPU affinity is unavailable or there is a single CPU)."""
    if not can_pin():
        return []
    return [RunSpec(pinned_row(DIRECT), "direct", direct, pinned=True),
            *(dataclasses.replace(f, name=pinned_row(f.name), pinned=True) for f in fronts)]


async def overhead(s: OverheadSettings, workdir: Path, profiles: bool) -> tuple[Section, Outcome]:
    """Issue 3: poolgate against direct on a zero-latency replica."""
    started = time.monotonic()
    config = overhead_config(s, s.concurrency, s.requests, s.warmup)
    fronts = [RunSpec(GATEWAY, "poolgate", gateway(_gateway_profile("default", profiles)))]
    outcome = await shared_fleet(s.fleet, _overhead_runs(s, fronts), config, workdir,
                                 s.rounds)
    section = _section("overhead", started, _overhead_settings(s),
                       [sim_command(s.fleet), _bench_command(config)], outcome,
                       _profile_notes(profiles) + _round_notes(outcome))
    return section, outcome


async def routing(s: RoutingSettings, workdir: Path,
                  profiles: bool) -> tuple[Section, Outcome]:
    """Issue 4: the scheduler profiles on the shared-prefix workload, a fresh fleet each."""
    started = time.monotonic()
    config = routing_config(s)
    flags = time_scaled_gateway_flags(s.fleet.time_scale)
    if profiles:
        runs = [RunSpec(profile_row(p), "poolgate", gateway(p, flags)) for p in s.profiles]
    else:
        runs = [RunSpec("poolgate built-in", "poolgate", gateway(None, flags))]
    outcome = await fresh_fleet_each(s.fleet, runs, config, workdir, scrape=True)
    section = _section("routing", started, _routing_settings(s),
                       [sim_command(s.fleet), _bench_command(config)], outcome,
                       _profile_notes(profiles))
    return section, outcome


async def pick(s: PickSettings, workdir: Path) -> Section:
    """Issue 4 (and 18): µs per pick at each fleet size, from `benchmarks.pick`'s measurer, for
    the editable install (plain Python) and for poolgate built as `pip install .` builds it (the
    pick's modules compiled by mypyc: the "(mypyc)" rows). Each call runs in a process of its
    own, alternating between the builds."""
    started = time.monotonic()
    notes: list[str] = []
    try:
        compiled: Path | None = await build_compiled(workdir / "compiled")
    except BenchError as e:
        lines = str(e).strip().splitlines()
        compiled = None
        notes.append(f"the (mypyc) rows were not measured: {lines[0] if lines else e}")
    builds = {"": None} if compiled is None else {"": None, COMPILED: compiled_env(compiled)}
    costs: dict[str, dict[str, float]] = {}
    for profile in s.profiles:
        runs: dict[str, list[dict[str, float]]] = {build: [] for build in builds}
        # The best of several calls, as measure_pick_cost itself takes the best of its
        # rounds: other work on a shared 2-core machine only ever adds time.
        for _ in range(s.repeats):
            for build, env in builds.items():
                runs[build].append(await _pick_costs(profile, s, env, notes))
        for build, results in runs.items():
            costs[profile + build] = {
                str(n): round(min(r[str(n)] for r in results), 2) for n in s.sizes}
    return Section(
        name="pick", created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1),
        settings={"sizes": list(s.sizes), "picks": s.picks, "repeats": s.repeats,
                  "profiles": list(s.profiles)},
        commands=[*(f"python -m benchmarks.pick {p}" for p in s.profiles),
                  *([PICK_COMPILED_COMMAND] if compiled is not None else [])],
        notes=[*notes, f"the best of {s.repeats} calls of measure_pick_cost (each in a process of "
                       "its own, alternating plain and compiled), each the best of 5 "
                       "rounds of `pick` + `on_picked` over a synthetic fleet with fresh signals "
                       "and a prefix index warmed by max(200, 4 x endpoints) earlier requests"],
        extra={"us_per_pick": costs},
    )


PICK_COMPILED_COMMAND = (
    "pip wheel --no-deps -w wheel . && python -m zipfile -e wheel/poolgate-*.whl $COMPILED && "
    "PYTHONPATH=$COMPILED python -m benchmarks.pick default  # the (mypyc) rows")


async def _pick_costs(profile: str, s: PickSettings, env: dict[str, str] | None,
                      notes: list[str]) -> dict[str, float]:
    """One `python -m benchmarks.pick --json` run: µs per pick by size; BenchError when it
    fails, or when the compiled build (`env` set) did not load a compiled scheduler."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.pick", "--json", profile, str(s.picks),
        *(str(n) for n in s.sizes), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, cwd=ROOT,
        env={**os.environ, **env} if env is not None else None)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"python -m benchmarks.pick failed ({proc.returncode}): "
                         f"{err.decode(errors='replace').strip()[-1500:]}")
    result = json.loads(out)
    module = str(result["module"])
    if env is not None and not module.endswith(".so"):
        raise BenchError(f"the compiled build ran a plain scheduler: {module}")
    if env is None and module.endswith(".so"):
        notes.append(f"the plain rows ran a compiled scheduler ({module}): is poolgate "
                     "installed from a wheel rather than editable?")
    return {str(k): float(v) for k, v in result["us_per_pick"].items()}


# The rate of the peers-routing floor row, as a fraction of the section's rate.
FLOOR_RATE_FRACTION = 0.2


def _peer_runs(venv: Path, cwd: Path) -> list[RunSpec]:
    return [RunSpec(f"{p.name} {policy}", "peer", peer(p, venv, policy, cwd))
            for p in PEERS for policy in p.policies]


async def peers_overhead(s: OverheadSettings, venv: Path, workdir: Path, cwd: Path,
                         profiles: bool) -> tuple[Section, Outcome]:
    """Issue 7 (a): poolgate and each peer policy against direct, zero-latency replica."""
    started = time.monotonic()
    config = overhead_config(s, s.concurrency, s.requests, s.warmup)
    fronts = [RunSpec(GATEWAY, "poolgate", gateway(_gateway_profile("default", profiles))),
              *_peer_runs(venv, cwd)]
    runs = _overhead_runs(s, fronts)
    outcome = await shared_fleet(s.fleet, runs, config, workdir, s.rounds)
    section = _section("peers-overhead", started, _overhead_settings(s),
                       [sim_command(s.fleet), _bench_command(config)], outcome,
                       _profile_notes(profiles) + _round_notes(outcome))
    return section, outcome


async def peers_routing(s: RoutingSettings, venv: Path, workdir: Path, cwd: Path,
                        profiles: bool) -> tuple[Section, Outcome]:
    """Issue 7 (b): poolgate's default profile and each peer policy, a fresh fleet each."""
    started = time.monotonic()
    config = routing_config(s)
    name = profile_row("default") if profiles else "poolgate built-in"
    flags = time_scaled_gateway_flags(s.fleet.time_scale)
    ours = RunSpec(name, "poolgate", gateway(_gateway_profile("default", profiles), flags))
    # The same requests at a fifth of the rate: nothing queues, every system prompt is cached
    # after its first use; its TTFT is what no router can beat on this fleet.
    low = s.rate * FLOOR_RATE_FRACTION
    floor = dataclasses.replace(
        ours, name=floor_row(name, low), kind="floor",
        config=dataclasses.replace(config, load=dataclasses.replace(config.load, rate=low)))
    runs = [ours, *_peer_runs(venv, cwd), floor]
    outcome = await fresh_fleet_each(s.fleet, runs, config, workdir, scrape=True)
    section = _section("peers-routing", started, _routing_settings(s),
                       [sim_command(s.fleet), _bench_command(config)], outcome,
                       [*_profile_notes(profiles),
                        f"the last row is poolgate's default again at {low:g} requests/s "
                        f"({FLOOR_RATE_FRACTION:g} of the rate): no request waits for another, "
                        "so its TTFT is the fleet's floor, what the simulated H100s take to "
                        "prefill a question after a cached system prompt; the TTFT target is "
                        "judged against the best peer, and the floor shows how far below it "
                        "any router could go"])
    return section, outcome


def _profile_notes(profiles: bool) -> list[str]:
    if profiles:
        return []
    return ["`poolgate serve` has no `--scheduler-profile` flag in this build: poolgate ran "
            "with its built-in endpoint choice, and no profile could be selected"]


def _round_notes(outcome: Outcome) -> list[str]:
    """What the medians hide: every round's front CPU per request, for the fronts that have it."""
    if not outcome.per_round:
        return []
    rounds = max(len(v) for v in outcome.per_round.values())
    parts = []
    for name, figures in outcome.per_round.items():
        cpu = [f["cpu_us_per_request"] for f in figures]
        if any(c is not None for c in cpu):
            parts.append(f"{name} " + " / ".join("-" if c is None else f"{c:.0f}" for c in cpu))
    return [f"every row is the median of {rounds} interleaved rounds (the whole list of runs, "
            f"{rounds} times); front CPU per request by round, in µs: " + "; ".join(parts)]


def _overhead_settings(s: OverheadSettings) -> dict[str, Any]:
    return {"replicas": s.fleet.replicas, "sim_profile": s.fleet.profile,
            "concurrency": s.concurrency, "requests": s.requests, "warmup": s.warmup,
            "c1_requests": s.c1_requests, "input_len": s.input_len, "output_len": s.output_len,
            "api": "completions", "stream": False, "seed": s.seed, "rounds": s.rounds}


def _routing_settings(s: RoutingSettings) -> dict[str, Any]:
    f = s.fleet
    return {"replicas": f.replicas, "sim_profile": f.profile, "time_scale": f.time_scale,
            "kv_cache_blocks": f.kv_cache_blocks, "block_size": 16, "rate": s.rate,
            "duration": s.duration, "warmup": s.warmup, "groups": s.groups,
            "prompts_per_group": s.prompts_per_group, "system_prompt_len": s.system_prompt_len,
            "question_len": s.question_len, "output_len": s.output_len,
            "scrape_interval": s.scrape_interval, "seed": s.seed, "api": "chat", "stream": True}

"""Issue 18: the profile of `poolgate serve` at saturation, default and round-robin profiles, on
the saturation section's instant backends (see `profiling` for how samples become stages).

Per round and scheduler profile: one gateway is started and warmed up, measured once at
saturation without the profiler (requests/s, CPU per request, user and system time), then
saturated again while py-spy samples it. Rounds alternate the profiles; samples add up over the
rounds, CPU figures are medians.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.suite.commands import display
from benchmarks.suite.compiled import compiled_env, hot_modules
from benchmarks.suite.epp import Front
from benchmarks.suite.epp_stack import cpu_between, read_cpu, single
from benchmarks.suite.harness import slug
from benchmarks.suite.instant import record_answers, start_instant_fleet
from benchmarks.suite.model import Section
from benchmarks.suite.pinning import FRONT_CPU_INDEX, LOAD_CPU_INDEX, can_pin, pinned, usable_cpus
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.profiling import (
    CpuTimes,
    Profile,
    parse_raw,
    pyspy_binary,
    record,
    record_argv,
)
from benchmarks.suite.saturation import SaturationSettings, check_front, compiled_tree
from benchmarks.suite.stack import Fleet, gateway, start_fleet
from benchmarks.suite.wrk import WrkRun, run_wrk, wrk_binary
from poolgate.bench import BenchError

NAME = "saturation-profile"
PROFILES = ("default", "round-robin")
# Each profile also as `pip install .` installs it: the hot modules compiled by mypyc.
COMPILED = " (mypyc)"
# Samples a second. py-spy stops the gateway for each native sample (1-2 ms of unwinding here:
# at 200 a second it was stopped a third of the time), so more would slow what is measured.
SAMPLE_RATE = 100


@dataclass(frozen=True, slots=True)
class ProfileSettings:
    seconds: float  # each measured and each profiled run
    warmup_seconds: float
    rounds: int
    rate: int = SAMPLE_RATE
    native: bool = True


def profile_settings(quick: bool) -> ProfileSettings:
    return (ProfileSettings(seconds=4, warmup_seconds=1, rounds=1) if quick
            else ProfileSettings(seconds=10, warmup_seconds=2, rounds=2))


@dataclass(frozen=True, slots=True)
class Measured:
    """One round of one scheduler profile."""

    requests_per_s: float
    cpu_us: float  # per request, without the profiler
    user_us: float
    system_us: float
    profiled_requests_per_s: float
    profiled_cpu_us: float | None  # per request while py-spy sampled
    profiled_cpu_share: float | None  # of one core, while py-spy sampled
    stacks: str


async def measure_profile(profile: str, fleet: Fleet, s: ProfileSettings, body: str,
                          log_dir: Path, compiled: Path | None = None) -> Measured:
    """Start `poolgate serve --scheduler-profile profile` on `fleet` (from the `compiled` tree
    when given), saturate it once without and once under py-spy."""
    env = None if compiled is None else compiled_env(compiled)
    front = Front(f"poolgate {profile}", "poolgate",
                  single("poolgate", gateway(profile, env=env)))
    with ProcessGroup(log_dir) as group:
        stack = await front.start(group, fleet)
        pid = stack.processes[0][1]
        with pinned(pin_layout(pid, fleet.process.pid)):
            return await _measure(profile, pid, stack.url, s, body, log_dir)


def pin_layout(gateway_pid: int, backend_pid: int) -> list[tuple[int, set[int]]]:
    """The gateway on a CPU of its own; this process (so `wrk` and py-spy, which it starts),
    and the backends on another. Without that the gateway waits for a CPU at times, and py-spy,
    which samples a thread that is runnable as well as one that runs, would count the waits
    (most of them right after a socket write that woke the reader) as work. Empty where
    affinity is not available."""
    if not can_pin():
        return []
    cpus = usable_cpus()
    load, own = {cpus[LOAD_CPU_INDEX]}, {cpus[FRONT_CPU_INDEX]}
    return [(os.getpid(), load), (backend_pid, load), (gateway_pid, own)]


async def _measure(profile: str, pid: int, base_url: str, s: ProfileSettings, body: str,
                   log_dir: Path) -> Measured:
    url = f"{base_url}/v1/completions"
    await check_front(base_url, body, False)
    await run_wrk(WrkRun(url, body, s.warmup_seconds))
    times, cpu = CpuTimes.of(pid), read_cpu(pid)
    plain = await run_wrk(WrkRun(url, body, s.seconds))
    used, split = cpu_between(cpu, read_cpu(pid)), CpuTimes.of(pid) - times
    n = plain.requests
    # The profiled window sits inside a longer saturation run (py-spy starts once wrk's
    # connections are busy); its requests are wrk's rate over the window.
    loaded = asyncio.create_task(run_wrk(WrkRun(url, body, s.seconds + 2)))
    try:
        await asyncio.sleep(1.0)
        cpu, started = read_cpu(pid), time.monotonic()
        stacks = await record(pid, s.seconds, s.rate, log_dir / f"{slug(profile)}.raw",
                              s.native)
        window, profiled_cpu = time.monotonic() - started, cpu_between(cpu, read_cpu(pid))
        profiled = await loaded
    finally:
        if not loaded.done():
            loaded.cancel()
    in_window = profiled.throughput * window
    print(f"  poolgate {profile}: {plain.throughput:,.0f} req/s, {used * 1e6 / n:.1f} µs/req; "
          f"under py-spy {profiled.throughput:,.0f} req/s, {profiled_cpu / window:.0%} of a "
          "core", file=sys.stderr, flush=True)
    return Measured(plain.throughput, used * 1e6 / n, split.user * 1e6 / n,
                    split.system * 1e6 / n, profiled.throughput,
                    profiled_cpu * 1e6 / in_window if in_window else None,
                    profiled_cpu / window if window > 0 else None, stacks)


def summarize(found: Sequence[Measured]) -> dict[str, Any]:
    """Medians of the rounds' figures and the samples of every round folded together (the C
    frames of modules mypyc compiled read as the Python functions they come from)."""
    folded = Profile()
    for m in found:
        folded.add(parse_raw(m.stacks, hot_modules()))

    def med(values: Sequence[float | None]) -> float | None:
        present = [v for v in values if v is not None]
        return statistics.median(present) if present else None

    return {"requests_per_s": med([m.requests_per_s for m in found]),
            "cpu_us": med([m.cpu_us for m in found]),
            "user_us": med([m.user_us for m in found]),
            "system_us": med([m.system_us for m in found]),
            "profiled_requests_per_s": med([m.profiled_requests_per_s for m in found]),
            "profiled_cpu_us": med([m.profiled_cpu_us for m in found]),
            "profiled_cpu_share": med([m.profiled_cpu_share for m in found]),
            "rounds": len(found), **folded.to_dict()}


async def run(s: ProfileSettings, sat: SaturationSettings, workdir: Path) -> Section:
    """The profile section: the saturation section's instant backends, each scheduler profile
    in `PROFILES`, `s.rounds` interleaved rounds."""
    started = time.monotonic()
    wrk_binary()
    pyspy_binary()
    body = sat.tiny_body()
    tree, notes = await compiled_tree(workdir / "compiled")
    variants: list[tuple[str, str, Path | None]] = [(p, p, None) for p in PROFILES]
    if tree is not None:
        variants += [(p + COMPILED, p, tree) for p in PROFILES]
    found: dict[str, list[Measured]] = {name: [] for name, _, _ in variants}
    with ProcessGroup(workdir / "sim-logs") as recording:
        sim = await start_fleet(recording, dataclasses.replace(sat.fleet, replicas=1),
                                workdir / "sim")
        answers = await record_answers(sim.urls[0], body.encode())
    with ProcessGroup(workdir / "fleet-logs") as fleets:
        instant = await start_instant_fleet(fleets, sat.replicas, answers, workdir / "instant")
        for n in range(s.rounds):
            for name, profile, compiled in variants:
                try:
                    found[name].append(await measure_profile(
                        profile, instant, s, body, workdir / f"round-{n}" / slug(name),
                        compiled))
                except BenchError as e:
                    lines = str(e).strip().splitlines()
                    notes.append(f"poolgate {name}, round {n + 1}: not measured: "
                                 f"{lines[0] if lines else type(e).__name__}")
    profiles = {name: summarize(m) for name, m in found.items() if m}
    if not profiles:
        raise BenchError("no profile was measured: " + "; ".join(notes))
    commands = [
        "python -m benchmarks.suite --only saturation  # starts the instant backends and the "
        "gateway as in the saturation section, then:",
        f"BODY='{body}'",
        WrkRun("", body, s.seconds + 2).shown("http://127.0.0.1:$PORT/v1/completions") + " &",
        display(record_argv("$GATEWAY_PID", s.seconds, s.rate, "stacks.raw")),
    ]
    settings = {"seconds": s.seconds, "sample_rate": s.rate, "rounds": s.rounds,
                "connections": sat.connections, "replicas": sat.replicas, "native": True}
    return Section(
        name=NAME, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=settings, commands=commands,
        notes=notes, extra={"profiles": profiles})

"""Issue 18: every front at saturation and at fixed rates, driven by a C load client (`wrk`).

The overhead sections (1, 4a) drive the fronts with `poolgate bench`, a Python client that
saturates first (about 4.6k requests/s on its own on this machine): they answer what a front
adds to a request at the rate that client reaches. This section answers how many requests per
second a front serves, and what each costs it, when the client is not the limit: `wrk -t1 -c64`
posts tiny non-streamed completions to 3 instant backends (`instant`: Envoy replaying the
simulator's answers, so the backends are not the limit either), through each front in turn:
Envoy alone (one worker, round robin: the floor), `poolgate serve` (default and round-robin
profiles), vllm-router and sglang-router (round_robin and cache_aware, from `.venv-peers`).
Each front is measured at saturation, at fixed rates, and relaying 100-token SSE streams from
the simulator; the front's CPU (its whole process tree, from /proc) is divided by the requests
or chunks of the measured window. Rounds run the whole list again, interleaved; rows are the
medians.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.suite.commands import PEERS, SimSpec
from benchmarks.suite.compiled import build_compiled, compiled_env
from benchmarks.suite.epp import Front, peers_available
from benchmarks.suite.epp_stack import (
    Stack,
    cpu_between,
    envoy_round_robin,
    envoy_version,
    no_front,
    read_cpu,
    single,
)
from benchmarks.suite.harness import sim_command, slug
from benchmarks.suite.instant import instant_command, record_answers, start_instant_fleet
from benchmarks.suite.model import RunRow, Section, median_row
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.stack import Fleet, gateway, peer, start_fleet
from benchmarks.suite.wrk import WrkResult, WrkRun, run_wrk, wrk_binary
from poolgate.bench import BenchError

NAME = "saturation"
DIRECT = "direct"
ENVOY = "Envoy round robin"
POOLGATE_DEFAULT = "poolgate default"
POOLGATE_RR = "poolgate round-robin"
# The same, compiled with mypyc (what `pip install .` installs; `make` installs plain Python).
COMPILED = " (mypyc)"
POOLGATE_DEFAULT_COMPILED = POOLGATE_DEFAULT + COMPILED
POOLGATE_RR_COMPILED = POOLGATE_RR + COMPILED
VLLM_ROUTER_RR = "vllm-router round_robin"
SATURATION = "saturation"
STREAM = "stream"
PROMPT = "Say hello to the benchmark."


def rate_key(rate: float) -> str:
    """The workload key of a fixed-rate run."""
    return f"{rate:g} req/s"


@dataclass(frozen=True, slots=True)
class SaturationSettings:
    """How long each `wrk` run lasts, the fixed rates, the stream length, the rounds."""

    seconds: float  # each saturation run
    rate_seconds: float  # each fixed-rate run
    stream_seconds: float
    warmup_seconds: float
    rounds: int
    rates: tuple[float, ...] = (2000.0, 5000.0)
    replicas: int = 3
    connections: int = 64
    threads: int = 1
    stream_tokens: int = 100
    model: str = "sim-llama"

    @property
    def fleet(self) -> SimSpec:
        """The simulator: its answers are recorded for the instant backends, and it serves
        the streams."""
        return SimSpec(replicas=self.replicas, profile="zero", model=self.model)

    def tiny_body(self) -> str:
        return orjson.dumps({"model": self.model, "prompt": PROMPT, "max_tokens": 1}).decode()

    def stream_body(self) -> str:
        return orjson.dumps({"model": self.model, "prompt": PROMPT,
                             "max_tokens": self.stream_tokens, "stream": True}).decode()


def saturation_settings(quick: bool) -> SaturationSettings:
    if quick:
        return SaturationSettings(seconds=4, rate_seconds=3, stream_seconds=4, warmup_seconds=1,
                                  rounds=1)
    return SaturationSettings(seconds=10, rate_seconds=6, stream_seconds=8, warmup_seconds=2,
                              rounds=2)


def saturation_fronts(peers_venv: Path | None, cwd: Path,
                      compiled: Path | None = None) -> list[Front]:
    """direct, Envoy alone, poolgate's two profiles (also compiled, from the `compiled` tree,
    when there is one), and each peer policy when installed."""
    fronts = [Front(DIRECT, "direct", no_front), Front(ENVOY, "envoy", envoy_round_robin()),
              Front(POOLGATE_DEFAULT, "poolgate", single("poolgate", gateway("default"))),
              Front(POOLGATE_RR, "poolgate", single("poolgate", gateway("round-robin")))]
    if compiled is not None:
        env = compiled_env(compiled)
        fronts += [Front(name + COMPILED, "poolgate",
                         single("poolgate", gateway(profile, env=env)))
                   for name, profile in ((POOLGATE_DEFAULT, "default"),
                                         (POOLGATE_RR, "round-robin"))]
    if peers_venv is not None:
        fronts += [Front(f"{p.name} {policy}", "peer", single(p.name, peer(p, peers_venv, policy,
                                                                          cwd)))
                   for p in PEERS for policy in p.policies]
    return fronts


@dataclass
class Point:
    """One `wrk` run through one front: its row and what the row cannot hold."""

    row: RunRow
    front: str
    workload: str
    rate: float | None
    wrk: dict[str, Any]
    cpu_us: dict[str, float] = field(default_factory=dict)  # per request, by process role
    backend_cpu_us: float | None = None
    chunks: float | None = None  # SSE chunks per response (streams only)

    def to_dict(self) -> dict[str, Any]:
        return {"front": self.front, "workload": self.workload, "rate": self.rate,
                "cpu_us": self.cpu_us, "backend_cpu_us": self.backend_cpu_us,
                "chunks": self.chunks, "wrk": self.wrk}


def row_of(name: str, kind: str, result: WrkResult, cpu_us: float | None,
           command: str) -> RunRow:
    """A suite row from `wrk`'s result (latencies in seconds, as the other sections')."""
    failed = result.errors.get("status", 0)
    return RunRow(name=name, kind=kind, requests=result.requests,
                  completed=result.requests - failed, errors=dict(result.errors),
                  duration=result.duration, request_throughput=result.throughput,
                  output_throughput=0.0, e2e_p50=result.p50, e2e_p90=result.p90,
                  e2e_p99=result.p99, cpu_us_per_request=cpu_us, command=command)


async def check_front(url: str, body: str, stream: bool) -> float | None:
    """One request through the front before it is measured: it must answer 200 with a
    completion; for a stream, the number of SSE chunks it relayed (`data:` events other than
    `[DONE]`)."""
    timeout = aiohttp.ClientTimeout(total=30)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
                f"{url}/v1/completions", data=body,
                headers={"Content-Type": "application/json"}) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise BenchError(f"POST {url}/v1/completions failed: {e}") from None
    if resp.status != 200:
        raise BenchError(f"POST {url}/v1/completions answered {resp.status}: {text[:300]}")
    if not stream:
        if '"choices"' not in text:
            raise BenchError(f"POST {url}/v1/completions answered no completion: {text[:300]}")
        return None
    return float(count_chunks(text))


def count_chunks(text: str) -> int:
    """SSE `data:` events of a response body, `[DONE]` excepted."""
    return sum(1 for line in text.splitlines()
               if line.startswith("data:") and line[5:].strip() != "[DONE]")


@dataclass(frozen=True, slots=True)
class Load:
    """One measured `wrk` run of a front: its workload key and its run (URL filled in later)."""

    key: str
    run: WrkRun


def tiny_loads(s: SaturationSettings) -> list[Load]:
    body = s.tiny_body()
    out = [Load(SATURATION, WrkRun("", body, s.seconds, s.connections, s.threads))]
    out += [Load(rate_key(r), WrkRun("", body, s.rate_seconds, s.connections, s.threads, r))
            for r in s.rates]
    return out


def stream_loads(s: SaturationSettings) -> list[Load]:
    return [Load(STREAM, WrkRun("", s.stream_body(), s.stream_seconds, s.connections,
                                s.threads))]


async def measure(front: Front, stack: Stack, fleet: Fleet, load: Load,
                  chunks: float | None) -> Point:
    """One `wrk` run through `stack` with every front process's CPU and the backend's read
    around it."""
    run = dataclasses.replace(load.run, url=f"{stack.url}/v1/completions")
    name = f"{front.name} [{load.key}]"
    before = {role: read_cpu(pid) for role, pid in stack.processes}
    backend_before = read_cpu(fleet.process.pid)
    result = await run_wrk(run)
    after = {role: read_cpu(pid) for role, pid in stack.processes}
    backend = cpu_between(backend_before, read_cpu(fleet.process.pid))
    n = result.requests
    cpu = {role: cpu_between(before[role], after[role]) * 1e6 / n for role in before}
    row = row_of(name, front.kind, result, sum(cpu.values()) if cpu else None,
                 stack.shown[0] if stack.shown else "")
    print(f"  {name}: {result.throughput:,.0f} req/s, p50 {result.p50 * 1e3:.2f} ms, front CPU "
          f"{row.cpu_us_per_request or 0:.1f} µs/req, errors {result.failed}",
          file=sys.stderr, flush=True)
    return Point(row, front.name, load.key, load.run.rate, result.to_dict(), cpu,
                 backend * 1e6 / n, chunks)


@dataclass
class Runs:
    """The measured points of a round, in order, and what was noted on the way."""

    points: list[Point] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def skip(self, name: str, error: BenchError) -> None:
        lines = str(error).strip().splitlines()
        self.notes.append(f"{name}: not measured: {lines[0] if lines else type(error).__name__}")


async def run_front(front: Front, fleet: Fleet, loads: Sequence[Load], warmup: float,
                    stream: bool, log_dir: Path, runs: Runs) -> None:
    """Start `front` in front of `fleet`, check it, warm it up at saturation, then measure
    every load through it; stopped (with everything it started) at the end."""
    with ProcessGroup(log_dir) as group:
        try:
            stack = await front.start(group, fleet)
            runs.commands.extend(c for c in stack.shown if c not in runs.commands)
            chunks = await check_front(stack.url, loads[0].run.body, stream)
            if warmup > 0:
                await run_wrk(dataclasses.replace(loads[0].run, url=f"{stack.url}/v1/completions",
                                                  seconds=warmup, rate=None))
            for load in loads:
                runs.points.append(await measure(front, stack, fleet, load, chunks))
        except BenchError as e:
            runs.skip(front.name, e)


async def run_round(fronts: Sequence[Front], instant: Fleet, sim: Fleet,
                    s: SaturationSettings, workdir: Path) -> Runs:
    """Every front on the instant backends (saturation, fixed rates), then on the simulator
    (streams); one front at a time."""
    runs = Runs()
    for front in fronts:
        await run_front(front, instant, tiny_loads(s), s.warmup_seconds, False,
                        workdir / "tiny" / slug(front.name), runs)
    for front in fronts:
        await run_front(front, sim, stream_loads(s), s.warmup_seconds, True,
                        workdir / "stream" / slug(front.name), runs)
    return runs


def combine(rounds: Sequence[Runs]) -> Runs:
    """One point per row name: medians over the rounds (rows by `median_row`)."""
    if len(rounds) == 1:
        return rounds[0]
    out = Runs()
    by_name: dict[str, list[Point]] = {}
    for r in rounds:
        for p in r.points:
            by_name.setdefault(p.row.name, []).append(p)
        out.commands.extend(c for c in r.commands if c not in out.commands)
        out.notes.extend(n for n in r.notes if n not in out.notes)
    for found in by_name.values():
        first = found[0]
        roles = list(dict.fromkeys(k for p in found for k in p.cpu_us))
        out.points.append(Point(
            median_row([p.row for p in found]), first.front, first.workload, first.rate,
            {**first.wrk, "rounds": [p.wrk for p in found]},
            {k: statistics.median([p.cpu_us[k] for p in found if k in p.cpu_us])
             for k in roles},
            _median([p.backend_cpu_us for p in found]), _median([p.chunks for p in found])))
    return out


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def per_round_cpu(rounds: Sequence[Runs]) -> dict[str, list[float | None]]:
    """Every round's front CPU per request, by row name (what the medians hide)."""
    out: dict[str, list[float | None]] = {}
    for r in rounds:
        for p in r.points:
            out.setdefault(p.row.name, []).append(p.row.cpu_us_per_request)
    return out


async def run(s: SaturationSettings, workdir: Path, peers_venv: Path | None,
              cwd: Path) -> Section:
    """The section: record the simulator's answers, start the instant backends beside it, then
    `s.rounds` interleaved rounds of every front."""
    started = time.monotonic()
    wrk_binary()  # fail before anything starts when the client is missing
    compiled, notes = await compiled_tree(workdir / "compiled")
    fronts = saturation_fronts(peers_venv, cwd, compiled)
    rounds: list[Runs] = []
    with ProcessGroup(workdir / "fleet-logs") as fleets:
        sim = await start_fleet(fleets, s.fleet, workdir / "sim")
        answers = await record_answers(sim.urls[0], s.tiny_body().encode())
        instant = await start_instant_fleet(fleets, s.replicas, answers, workdir / "instant")
        for n in range(s.rounds):
            if s.rounds > 1:
                print(f"  round {n + 1} of {s.rounds}", file=sys.stderr, flush=True)
            rounds.append(await run_round(fronts, instant, sim, s, workdir / f"round-{n}"))
    runs = combine(rounds)
    notes += runs.notes
    if peers_venv is None:
        notes.append("the peer routers are not installed (.venv-peers): run `make bench-peers` "
                     "once, then this section again, to add their rows")
    tiny, stream = tiny_loads(s), stream_loads(s)
    commands = [sim_command(s.fleet) + "  # its answers are recorded for the instant backends",
                *([COMPILED_COMMAND] if compiled is not None else []),
                instant_command() + "  # the instant backends: one listener per backend",
                f"BODY='{s.tiny_body()}'", *(ld.run.shown() for ld in tiny),
                f"BODY='{s.stream_body()}'  # the SSE case, on the simulator",
                *(ld.run.shown() for ld in stream), *runs.commands]
    settings = {"replicas": s.replicas, "connections": s.connections, "threads": s.threads,
                "seconds": s.seconds, "rates": list(s.rates), "rate_seconds": s.rate_seconds,
                "stream_tokens": s.stream_tokens, "stream_seconds": s.stream_seconds,
                "warmup_seconds": s.warmup_seconds, "rounds": s.rounds,
                "backends": f"{s.replicas}x Envoy direct_response (recorded from the simulator)",
                "stream_backends": f"{s.replicas}x poolgate sim --profile zero",
                "envoy": envoy_version(), "client": "wrk"}
    return Section(
        name=NAME, created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=settings, commands=commands,
        rows=[p.row for p in runs.points], notes=notes,
        extra={"points": {p.row.name: p.to_dict() for p in runs.points},
               "per_round_cpu_us": per_round_cpu(rounds),
               "fronts": [f.name for f in fronts], "cores": os.cpu_count(),
               "workloads": [ld.key for ld in tiny] + [STREAM]})


COMPILED_COMMAND = ("pip wheel --no-deps -w wheel . && python -m zipfile -e wheel/poolgate-*.whl "
                    "$COMPILED  # the (mypyc) rows: poolgate serve with PYTHONPATH=$COMPILED")


async def compiled_tree(workdir: Path) -> tuple[Path | None, list[str]]:
    """poolgate built as `pip install .` builds it (hot modules compiled), for the (mypyc)
    rows; None, with a note saying why, when it cannot be built compiled here."""
    print("  building the compiled wheel", file=sys.stderr, flush=True)
    try:
        return await build_compiled(workdir), []
    except BenchError as e:
        lines = str(e).strip().splitlines()
        return None, [f"the (mypyc) rows were not measured: {lines[0] if lines else e}"]


def available_peers(venv: Path) -> Path | None:
    """`venv` when it holds both peer routers, else None (their rows are then left out)."""
    return venv if peers_available(venv) else None

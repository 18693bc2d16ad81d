"""One capacity trial: a fresh simulated fleet, the front in front of it, every group's prefix
cached through the front (`capacity_warmup`), then the measured open-loop run; every process
stopped by PID at the end, pass or fail.

A front brings its own fleet: the peers and poolgate's default profile run on the plain fleet of
the other sections, the precise profile on the same fleet publishing its KV events
(`precise.start_event_fleet`, the precise section's).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.suite.capacity_warmup import one_per_group, send_each
from benchmarks.suite.commands import CONFIG_DIR, SimSpec, display, sim_argv
from benchmarks.suite.manifests import ENDPOINTS_FILE
from benchmarks.suite.model import RunRow
from benchmarks.suite.precise import (
    PRECISE,
    kv_events_config,
    shown_commands,
    start_event_fleet,
    start_gateway,
)
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.stack import StartFront, start_fleet
from poolgate.bench import BenchConfig, BenchResult, Target, run_benchmark


@dataclass(frozen=True, slots=True)
class TrialFront:
    """A started front: where the load goes and its command as the report shows it."""

    url: str
    shown: str | None


StartTrial = Callable[[ProcessGroup, SimSpec, Path], Awaitable[TrialFront]]


def on_fleet(start: StartFront) -> StartTrial:
    """The suite's plain fleet, then `start` (poolgate serve, a peer router, or no front)."""

    async def go(group: ProcessGroup, spec: SimSpec, workdir: Path) -> TrialFront:
        fleet = await start_fleet(group, spec, workdir)
        front = await start(group, fleet)
        return TrialFront(front.url, front.shown)

    return go


def precise_gateway(time_scale: float) -> StartTrial:
    """A fleet publishing KV events, then `poolgate serve` with the precise profile
    (`precise-profile.yaml`, the replicas' event addresses filled in)."""

    async def go(group: ProcessGroup, spec: SimSpec, workdir: Path) -> TrialFront:
        fleet = await start_event_fleet(group, spec, workdir)
        gateway = await start_gateway(group, PRECISE, fleet, workdir, time_scale)
        return TrialFront(gateway.url, shown_commands(PRECISE, time_scale))

    return go


def event_fleet_command(spec: SimSpec) -> str:
    """The simulator's command of the precise front's trials, with the ports as shell variables
    that expand (the JSON in double quotes, its own quotes escaped)."""
    plain = display(sim_argv(spec, "$SIM_PORT", CONFIG_DIR / ENDPOINTS_FILE))
    config = kv_events_config("$KV_PORT", "$REPLAY_PORT").replace('"', '\\"')
    return f'{plain} --kv-events-config "{config}"'


async def run_trial(name: str, kind: str, start: StartTrial, spec: SimSpec,
                    config: BenchConfig, workdir: Path) -> tuple[RunRow, BenchResult, TrialFront]:
    """Start the fleet and the front, cache every group's prefix through it, measure; raises
    BenchError when something would not start or the warm-up failed."""
    print(f"  {name}: starting", file=sys.stderr, flush=True)
    with ProcessGroup(workdir / "logs") as group:
        front = await start(group, spec, workdir)
        await send_each(Target(name, front.url).endpoint(config.api), config,
                        one_per_group(config))
        result = await run_benchmark(config, Target(name, front.url))
    row = RunRow.of(name, kind, result, front.shown or "")
    print(f"  {name}: {row.completed}/{row.requests} ok, {row.request_throughput:.1f} req/s, "
          f"TTFT p90 {(row.ttft_p90 or 0) * 1000:.0f} ms", file=sys.stderr, flush=True)
    return row, result, front

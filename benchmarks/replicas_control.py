"""Issue 17, item 3: is it the machine or the routing that keeps three gateway replicas' TTFT p90
above one's?

`python -m benchmarks.replicas_control [--rounds 3] [--profile precise]` (from the repository
root) runs, in interleaved rounds, each on a fresh fleet, the replicas section's workload
(benchmarks/suite/replicas.py: Envoy round robin in front, the skewed shared-prefix chat at
20 requests/s on 8 simulated replicas) three ways:

- `1 gateway`: one `poolgate serve` behind Envoy (the section's row);
- `3 gateways, shared in-flight view`: three sharing their counts through Redis (the section's
  row);
- `3 gateways running, 1 serving`: the same three started the same way (shared view on, each
  scraping the replicas, each subscribed to their KV events with `precise`), but Envoy's cluster
  holds only gateway 1: one gateway's routing on a machine carrying three.

If the control's TTFT p90 is close to the shared row's, the machine (three processes' scrapes,
event fan-out and exchanges on 2 cores, next to a simulator whose stalls are stretched 5x by the
time scale) is what stands between three replicas and one; if it is close to one gateway's, the
routing is. Besides the TTFT percentiles, throughput and prefix-cache hit rate (medians over the
rounds), each run reports the simulator's CPU (of one core), every front process's, the load
client's, and the machine's busy share from /proc/stat over the measured phase (warm-up left
out), with what the run's own processes do not account for ("other": the rest of the machine).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.suite import replicas
from benchmarks.suite.epp import Front, measure, zipf_config
from benchmarks.suite.epp_stack import CpuReading, Stack, cpu_between, read_cpu
from benchmarks.suite.harness import slug
from benchmarks.suite.model import RunRow
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.stack import Fleet, start_fleet
from poolgate.bench import BenchConfig, BenchError, LoadConfig, Target, run_benchmark
from poolgate.scheduling.registry import REGISTRY

GATEWAYS = 3
SIMULATOR = "simulator"
CLIENT = "load client"


def one_row(profile: str) -> str:
    return replicas.one_row(profile)


def shared_row(profile: str) -> str:
    return replicas.shared_row(profile, GATEWAYS)


def control_row(profile: str) -> str:
    return f"{profile}: {GATEWAYS} gateways running, 1 serving"


def fronts(profile: str, time_scale: float, interval: float) -> list[Front]:
    """One round's runs, in order: one gateway, three sharing, three running with one serving."""
    return [
        Front(one_row(profile), "poolgate",
              replicas.behind_front(1, profile, False, time_scale, interval)),
        Front(shared_row(profile), "poolgate",
              replicas.behind_front(GATEWAYS, profile, True, time_scale, interval)),
        Front(control_row(profile), "poolgate",
              replicas.behind_front(GATEWAYS, profile, True, time_scale, interval, serving=1)),
    ]


@dataclass(frozen=True, slots=True)
class MachineCpu:
    """The machine's CPU time from /proc/stat's `cpu` line, in clock ticks over all cores."""

    busy: int
    total: int


def machine_cpu(stat: str) -> MachineCpu:
    """The aggregate `cpu` line of /proc/stat's text: busy is everything but idle and iowait
    (user, nice, system, irq, softirq, steal; guest time is already in user)."""
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            ticks = [int(v) for v in fields[1:9]]
            if len(ticks) < 5:
                break
            idle = ticks[3] + ticks[4]
            return MachineCpu(sum(ticks) - idle, sum(ticks))
    raise ValueError("no aggregate 'cpu' line with at least 5 fields in /proc/stat")


def read_machine_cpu(path: Path = Path("/proc/stat")) -> MachineCpu:
    return machine_cpu(path.read_text())


def busy_share(before: MachineCpu, after: MachineCpu) -> float | None:
    """The fraction (0..1) of all cores' time spent busy between two readings."""
    total = after.total - before.total
    return (after.busy - before.busy) / total if total > 0 else None


def gateway_requests(metrics: str) -> float:
    """Requests a gateway answered: the sum of its `poolgate_requests_total` samples."""
    return sum(s.value for f in text_string_to_metric_families(metrics) for s in f.samples
               if s.name == "poolgate_requests_total")


@dataclass
class ControlRun:
    """One measured run: the bench row and where the machine's CPU went meanwhile."""

    name: str
    round: int
    row: RunRow
    wall: float  # seconds of the measured phase
    cores: int
    machine_busy: float | None  # of all cores, 0..1
    core_use: dict[str, float] = field(default_factory=dict)  # role -> cores (1.0 = one core)
    gateway_requests: list[float] = field(default_factory=list)  # answered, per gateway
    shared_view: list[dict[str, float]] = field(default_factory=list)

    @property
    def other(self) -> float | None:
        """Cores busy on the machine beyond what this run's processes used (the rest of the
        machine: other work, the kernel's share not charged to a process)."""
        if self.machine_busy is None:
            return None
        return self.machine_busy * self.cores - sum(self.core_use.values())

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "round": self.round, "row": dataclasses.asdict(self.row),
                "wall": self.wall, "cores": self.cores, "machine_busy": self.machine_busy,
                "core_use": self.core_use, "other_cores": self.other,
                "gateway_requests": self.gateway_requests, "shared_view": self.shared_view}


def _median(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarise(runs: list[ControlRun]) -> list[dict[str, Any]]:
    """Per run name, in first-seen order: medians over its rounds of the row's figures, the
    simulator's, the gateways' and the client's CPU (cores), the machine's busy share and the
    rest of the machine; every round's TTFT p90 too."""
    by_name: dict[str, list[ControlRun]] = {}
    for r in runs:
        by_name.setdefault(r.name, []).append(r)
    out = []
    for name, found in by_name.items():
        rows = [r.row for r in found]

        def med(attr: str, rows: list[RunRow] = rows) -> float | None:
            return _median([getattr(x, attr) for x in rows])

        out.append({
            "name": name, "rounds": len(found),
            "ttft_p50": med("ttft_p50"), "ttft_p90": med("ttft_p90"), "ttft_p99": med("ttft_p99"),
            "output_throughput": med("output_throughput"),
            "request_throughput": med("request_throughput"),
            "prefix_cache_hit_rate": med("prefix_cache_hit_rate"),
            "queue_mean": med("queue_mean"), "queue_max": med("queue_max"),
            "errors": sum(sum(x.errors.values()) for x in rows),
            "sim_cores": _median([r.core_use.get(SIMULATOR) for r in found]),
            "gateway_cores": _median([sum(v for k, v in r.core_use.items()
                                          if k.startswith("gateway")) for r in found]),
            "front_cores": _median([sum(v for k, v in r.core_use.items()
                                        if k not in (SIMULATOR, CLIENT)) for r in found]),
            "client_cores": _median([r.core_use.get(CLIENT) for r in found]),
            "machine_busy": _median([r.machine_busy for r in found]),
            "other_cores": _median([r.other for r in found]),
            "ttft_p90_by_round": [x.ttft_p90 for x in rows],
        })
    return out


def gap_reproduced(one: float | None, shared: float | None,
                   control: float | None) -> float | None:
    """Where the control's figure sits between one gateway's (0) and three sharing's (1): the
    share of the one-to-three gap that three processes on the machine alone bring back (below 0
    or above 1 when it falls outside). None when a figure is missing or there is no gap."""
    if one is None or shared is None or control is None or shared == one:
        return None
    return (control - one) / (shared - one)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v * 1000:.0f} ms"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.1f}%"


def _num(v: float | None, digits: int) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def _cores(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f}%"


def markdown(summary: list[dict[str, Any]]) -> str:
    """The runs as a markdown table (CPU as % of one core; machine busy as % of all cores)."""
    lines = ["| run | TTFT p50 | TTFT p90 | TTFT p99 | output tokens/s | requests/s | "
             "prefix-cache hits | waiting mean / max | simulator CPU (of 1 core) | gateways CPU | Envoy + gateways "
             "+ Redis CPU | load client CPU | machine busy (of all cores) | rest of machine | "
             "TTFT p90 by round |",
             "| --- " * 15 + "|"]
    for s in summary:
        rounds = " / ".join(_ms(v) for v in s["ttft_p90_by_round"])
        lines.append(
            f"| {s['name']} | {_ms(s['ttft_p50'])} | {_ms(s['ttft_p90'])} | "
            f"{_ms(s['ttft_p99'])} | {s['output_throughput'] or 0:,.1f} | "
            f"{s['request_throughput'] or 0:.1f} | {_pct(s['prefix_cache_hit_rate'])} | "
            f"{_num(s['queue_mean'], 1)} / {_num(s['queue_max'], 0)} | "
            f"{_cores(s['sim_cores'])} | {_cores(s['gateway_cores'])} | "
            f"{_cores(s['front_cores'])} | {_cores(s['client_cores'])} | "
            f"{_pct(s['machine_busy'])} | {_cores(s['other_cores'])} | {rounds} |")
    return "\n".join(lines)


def verdict(summary: list[dict[str, Any]], profile: str) -> str:
    """One line: how much of the one-to-three TTFT p90 gap the control brings back."""
    p90 = {s["name"]: s["ttft_p90"] for s in summary}
    one, shared, control = (p90.get(one_row(profile)), p90.get(shared_row(profile)),
                            p90.get(control_row(profile)))
    share = gap_reproduced(one, shared, control)
    if share is None:
        return "TTFT p90: no gap between one gateway and three sharing (or a run is missing)"
    where = ("below one gateway's" if share < 0 else "above three sharing's" if share > 1
             else "between them")
    return (f"TTFT p90: 1 gateway {_ms(one)}, 3 sharing {_ms(shared)}, 3 running / 1 serving "
            f"{_ms(control)}: the control sits at {share * 100:.0f} % of the gap, {where} "
            "(0 %: the routing is what stands in the way; 100 %: the machine)")


def _warmup_only(config: BenchConfig) -> BenchConfig:
    """The warm-up `measure` would send (same stream and concurrency, one measured request)."""
    load = LoadConfig(concurrency=config.load.concurrency or 4, requests=1,
                      warmup=config.load.warmup)
    return dataclasses.replace(config, load=load, scrape_urls=())


def _readings(stack: Stack, fleet: Fleet) -> dict[str, CpuReading]:
    out = {role: read_cpu(pid) for role, pid in stack.processes}
    out[SIMULATOR] = read_cpu(fleet.process.pid)
    return out


async def _gateway_metrics(group: ProcessGroup) -> list[str]:
    """Each gateway's admin /metrics text (from the admin port on its command line)."""
    out = []
    async with aiohttp.ClientSession() as session:
        for proc in group.started:
            if proc.name.startswith("gateway-"):
                admin = proc.argv[proc.argv.index("--admin-port") + 1]
                async with session.get(f"http://127.0.0.1:{admin}/metrics") as resp:
                    out.append(await resp.text())
    return out


async def measure_run(front: Front, config: BenchConfig, stack: Stack, fleet: Fleet,
                      group: ProcessGroup, round_: int) -> ControlRun:
    """Warm up, then the section's measured run with every process's CPU and the machine's
    read around it."""
    if config.load.warmup:
        await run_benchmark(_warmup_only(config), Target(front.name, stack.url))
    config = dataclasses.replace(config, load=dataclasses.replace(config.load, warmup=0))
    before, machine_before = _readings(stack, fleet), read_machine_cpu()
    client_before, wall = time.process_time(), time.monotonic()
    measured = await measure(front, "", stack, fleet, config)
    wall = time.monotonic() - wall
    client = time.process_time() - client_before
    machine_after, after = read_machine_cpu(), _readings(stack, fleet)
    use = {role: cpu_between(before[role], after[role]) / wall for role in before}
    use[CLIENT] = client / wall
    texts = await _gateway_metrics(group)
    return ControlRun(front.name, round_, measured.row, wall, os.cpu_count() or 1,
                      busy_share(machine_before, machine_after), use,
                      [gateway_requests(t) for t in texts],
                      [replicas.shared_view(t) for t in texts] if len(texts) > 1 else [])


async def run_once(front: Front, config: BenchConfig, s: replicas.ReplicaSettings,
                   workdir: Path, round_: int, notes: list[str]) -> ControlRun | None:
    """One run on a fresh fleet (publishing KV events for `precise`); every process it started
    is stopped, by PID, when it returns."""
    where = workdir / f"round-{round_}" / slug(front.name)
    with ProcessGroup(where / "logs") as group:
        try:
            if front.name.startswith(f"{replicas.PRECISE}: "):
                fleet = await replicas.start_fleet_with_events(group, s.routing.fleet, where)
            else:
                fleet = await start_fleet(group, s.routing.fleet, where)
            stack = await front.start(group, fleet)
            scraped = dataclasses.replace(config, scrape_urls=fleet.metrics_urls)
            return await measure_run(front, scraped, stack, fleet, group, round_)
        except BenchError as e:
            lines = str(e).strip().splitlines()
            notes.append(f"round {round_ + 1}, {front.name}: not measured: "
                         f"{lines[0] if lines else type(e).__name__}")
            return None


def _report_line(run: ControlRun) -> str:
    row = run.row
    return (f"  round {run.round + 1} {run.name}: TTFT p90 {_ms(row.ttft_p90)}, "
            f"p99 {_ms(row.ttft_p99)}, hits {_pct(row.prefix_cache_hit_rate)}, "
            f"sim {_cores(run.core_use.get(SIMULATOR))} of a core, machine busy "
            f"{_pct(run.machine_busy)}, rest {_cores(run.other)}, answered per gateway "
            f"{[round(v) for v in run.gateway_requests]}")


async def run(profile: str, rounds: int, duration: float | None, warmup: int | None,
              workdir: Path) -> tuple[list[ControlRun], list[str], dict[str, Any]]:
    s = replicas.replica_settings(quick=False)
    routing = s.routing
    if duration is not None:
        routing = dataclasses.replace(routing, duration=duration)
    if warmup is not None:
        routing = dataclasses.replace(routing, warmup=warmup)
    s = dataclasses.replace(s, routing=routing, rounds=rounds)
    config = zipf_config(routing)
    runs: list[ControlRun] = []
    notes: list[str] = []
    for n in range(rounds):
        print(f"round {n + 1} of {rounds}", file=sys.stderr, flush=True)
        for front in fronts(profile, routing.fleet.time_scale, s.shared_interval):
            done = await run_once(front, config, s, workdir, n, notes)
            if done is not None:
                runs.append(done)
                print(_report_line(done), file=sys.stderr, flush=True)
    settings = {"profile": profile, "rounds": rounds, "rate": routing.rate,
                "duration": routing.duration, "warmup": routing.warmup,
                "replicas": routing.fleet.replicas, "time_scale": routing.fleet.time_scale,
                "max_num_seqs": routing.fleet.max_num_seqs, "gateways": GATEWAYS,
                "shared_interval": s.shared_interval, "cores": os.cpu_count()}
    return runs, notes, settings


def _profiles() -> list[str]:
    return ["default", replicas.PRECISE] if replicas.PRECISE_SCORER in REGISTRY \
        else ["default"]


def _positive(kind: type[float] | type[int]) -> Any:
    def parse(text: str) -> float | int:
        value = kind(text)
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text}")
        return value
    return parse


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.replicas_control",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=_positive(int), default=3, help="interleaved rounds (3)")
    p.add_argument("--profile", choices=_profiles(), default=_profiles()[-1],
                   help="scheduling profile of every gateway (precise where available)")
    p.add_argument("--duration", type=_positive(float),
                   help="seconds of measured load per run (the section's 45)")
    p.add_argument("--warmup", type=_positive(int), help="warm-up requests (the section's 64)")
    p.add_argument("--json", type=Path, help="write every run and the medians here")
    p.add_argument("--workdir", type=Path, help="logs and configs (a new temporary directory)")
    args = p.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="replicas-control-"))
    print(f"logs in {workdir}", file=sys.stderr, flush=True)
    started = time.monotonic()
    runs, notes, settings = asyncio.run(
        run(args.profile, args.rounds, args.duration, args.warmup, workdir))
    summary = summarise(runs)
    print(markdown(summary))
    print()
    print(verdict(summary, args.profile))
    for note in notes:
        print(f"- {note}")
    print(f"({time.monotonic() - started:.0f} s)", file=sys.stderr)
    if args.json is not None:
        args.json.write_text(json.dumps(
            {"settings": settings, "summary": summary, "runs": [r.to_dict() for r in runs],
             "notes": notes}, indent=2))
    return 0 if runs else 1


if __name__ == "__main__":
    sys.exit(main())

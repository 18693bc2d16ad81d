"""A/B of `poolgate serve` at saturation (issue 18): CPU per request of two or more versions of
the gateway, in interleaved rounds, on the saturation section's instant backends.

Each variant is a source tree (`--variant NAME=SRC_DIR`, put first on PYTHONPATH; `.` for this
checkout) with optional environment settings (`--variant NAME=SRC_DIR,VAR=VALUE,...`;
`POOLGATE_AB_ARGS` adds `poolgate serve` flags, `POOLGATE_AB_PROCESSES=N` runs N gateways
sharing the port with `--reuse-port`, their CPU summed and the first one's RSS shown). Per
round, every variant in turn (the order rotates from round to round): `poolgate serve` started
on the instant backends, checked, warmed up at saturation, then `wrk -t1 -c64` for `--seconds`
while the gateway's user and system time (and its resident set before and after) are read from
/proc; the gateway is stopped before the next variant starts. Printed: every round's figures and
each variant's medians.

    python -m benchmarks.saturation_ab --variant base=/tmp/base/src --variant new=src \
        --profile round-robin --rounds 5 --seconds 5
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
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.suite.commands import HOST, serve_argv
from benchmarks.suite.epp_stack import cpu_between, read_cpu
from benchmarks.suite.instant import record_answers, start_instant_fleet
from benchmarks.suite.processes import ProcessGroup, free_port, wait_ready
from benchmarks.suite.profiling import CpuTimes
from benchmarks.suite.saturation import SaturationSettings, check_front
from benchmarks.suite.stack import Fleet, start_fleet
from benchmarks.suite.wrk import WrkRun, run_wrk


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    src: Path
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str) -> Variant:
        name, _, rest = text.partition("=")
        src, *settings = rest.split(",")
        if not name or not src:
            raise argparse.ArgumentTypeError(f"expected NAME=SRC_DIR[,VAR=VALUE...], got {text!r}")
        env = dict(s.split("=", 1) for s in settings)
        return cls(name, Path(src).resolve(), env)


@dataclass(frozen=True, slots=True)
class Result:
    variant: str
    round: int
    requests_per_s: float
    cpu_us: float
    user_us: float
    system_us: float
    rss_before_kb: int
    rss_after_kb: int


async def measure(variant: Variant, fleet: Fleet, profile: str, body: str, seconds: float,
                  warmup: float, log_dir: Path, n: int) -> Result:
    with ProcessGroup(log_dir) as group:
        port = free_port()
        extra = tuple(variant.env.get("POOLGATE_AB_ARGS", "").split())
        # POOLGATE_AB_PROCESSES=N: N gateways sharing the port (--reuse-port), CPU summed.
        processes = int(variant.env.get("POOLGATE_AB_PROCESSES", "1"))
        if processes > 1:
            extra += ("--reuse-port",)
        env = {k: v for k, v in variant.env.items() if not k.startswith("POOLGATE_AB_")}
        pythonpath = os.pathsep.join([str(variant.src), os.environ.get("PYTHONPATH", "")])
        procs = []
        for i in range(processes):
            admin = free_port()
            proc = group.start(f"gateway-{variant.name}-{i}",
                               serve_argv(fleet.config_dir, port, admin, profile, extra),
                               env={**env, "PYTHONPATH": pythonpath.rstrip(os.pathsep)})
            await wait_ready([f"http://{HOST}:{admin}/readyz"], proc)
            procs.append(proc)
        base = f"http://{HOST}:{port}"
        await check_front(base, body, False)
        url = f"{base}/v1/completions"
        await run_wrk(WrkRun(url, body, warmup))
        pids = [p.pid for p in procs]
        times, cpu = [CpuTimes.of(p) for p in pids], [read_cpu(p) for p in pids]
        rss = resident_kb(pids[0])
        result = await run_wrk(WrkRun(url, body, seconds))
        used = sum(cpu_between(c, read_cpu(p)) for c, p in zip(cpu, pids, strict=True))
        split = sum((CpuTimes.of(p) - t for t, p in zip(times, pids, strict=True)),
                    CpuTimes(0.0, 0.0))
        rss_after = resident_kb(pids[0])
        requests = result.requests
        if result.failed:
            raise SystemExit(f"{variant.name}: {result.failed} failed requests: {result.errors}")
        return Result(variant.name, n, result.throughput, used * 1e6 / requests,
                      split.user * 1e6 / requests, split.system * 1e6 / requests, rss, rss_after)


def resident_kb(pid: int) -> int:
    """The process's resident set (VmRSS), kB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError(f"no VmRSS for process {pid}")


async def main(variants: list[Variant], profile: str, rounds: int, seconds: float,
               warmup: float, workdir: Path) -> list[Result]:
    body = SaturationSettings(seconds=seconds, rate_seconds=0, stream_seconds=0,
                              warmup_seconds=warmup, rounds=rounds).tiny_body()
    results: list[Result] = []
    with ProcessGroup(workdir / "sim-logs") as recording:
        spec = dataclasses.replace(SaturationSettings(0, 0, 0, 0, 1).fleet, replicas=1)
        sim = await start_fleet(recording, spec, workdir / "sim")
        answers = await record_answers(sim.urls[0], body.encode())
    with ProcessGroup(workdir / "fleet-logs") as fleets:
        fleet = await start_instant_fleet(fleets, 3, answers, workdir / "instant")
        for n in range(rounds):
            order = variants[n % len(variants):] + variants[:n % len(variants)]
            for v in order:
                r = await measure(v, fleet, profile, body, seconds, warmup,
                                  workdir / f"round-{n}", n)
                results.append(r)
                print(f"round {n + 1} {v.name}: {r.requests_per_s:,.0f} req/s, "
                      f"{r.cpu_us:.1f} µs/req ({r.user_us:.1f} user, {r.system_us:.1f} system), "
                      f"RSS {r.rss_before_kb:,} -> {r.rss_after_kb:,} kB",
                      file=sys.stderr, flush=True)
    return results


def summary(results: list[Result], variants: list[Variant]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for v in variants:
        mine = [r for r in results if r.variant == v.name]
        out[v.name] = {
            "requests_per_s": statistics.median(r.requests_per_s for r in mine),
            "cpu_us": statistics.median(r.cpu_us for r in mine),
            "user_us": statistics.median(r.user_us for r in mine),
            "system_us": statistics.median(r.system_us for r in mine),
            "cpu_us_rounds": [round(r.cpu_us, 1) for r in mine],  # type: ignore[dict-item]
            "rss_growth_kb": statistics.median(r.rss_after_kb - r.rss_before_kb for r in mine),
        }
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variant", type=Variant.parse, action="append", required=True)
    parser.add_argument("--profile", default="round-robin")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="poolgate-ab-") as tmp:
        results = asyncio.run(main(args.variant, args.profile, args.rounds, args.seconds,
                                   args.warmup, Path(tmp)))
    print(json.dumps({"profile": args.profile, "rounds": args.rounds, "seconds": args.seconds,
                      "variants": summary(results, args.variant)}, indent=1))


if __name__ == "__main__":
    cli()

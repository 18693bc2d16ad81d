"""System calls per request of the saturation section's fronts (issue 18), counted by
`strace -c -f` while `wrk` holds a fixed rate of tiny completions on the instant backends.

Per front (names as the saturation section's rows: `poolgate round-robin`, `vllm-router
round_robin`, `Envoy round robin`, ...): started, checked, warmed up at saturation; then `strace
-c -f -p PID` is attached to every process of the front, `wrk -t1 -c64` sends `--rate` requests/s
for `--seconds`, and the tracer is stopped. Printed: each system call's count divided by the
requests `wrk` completed (the front's other work in the window, such as poolgate's scrapes of
the backends' /metrics, is counted with them). strace stops the traced process at every call:
the rate must stay well below what the front serves traced.

    python -m benchmarks.syscalls --front "poolgate round-robin" \
        --front "vllm-router round_robin" --rate 1000 --seconds 5
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.suite.epp import peers_available
from benchmarks.suite.instant import record_answers, start_instant_fleet
from benchmarks.suite.processes import ProcessGroup
from benchmarks.suite.saturation import SaturationSettings, check_front, saturation_fronts
from benchmarks.suite.stack import start_fleet
from benchmarks.suite.wrk import WrkRun, run_wrk

PEERS_VENV = Path(".venv-peers")


def parse_strace_summary(text: str) -> dict[str, int]:
    """Calls per system call from `strace -c` output (the `total` line left out)."""
    calls: dict[str, int] = {}
    for line in text.splitlines():
        fields = line.split()
        # % time, seconds, usecs/call, calls, [errors,] syscall
        if len(fields) not in (5, 6) or not fields[3].isdigit() or fields[-1] == "total":
            continue
        calls[fields[-1]] = calls.get(fields[-1], 0) + int(fields[3])
    return calls


async def count(front_names: list[str], rate: float, seconds: float, warmup: float,
                compiled: Path | None, peers: Path | None,
                workdir: Path) -> dict[str, dict[str, float]]:
    settings = SaturationSettings(seconds=seconds, rate_seconds=0, stream_seconds=0,
                                  warmup_seconds=warmup, rounds=1)
    body = settings.tiny_body()
    fronts = {f.name: f for f in saturation_fronts(peers, Path.cwd(), compiled)}
    missing = [n for n in front_names if n not in fronts]
    if missing:
        raise SystemExit(f"unknown front(s) {missing}; known: {sorted(fronts)}")
    with ProcessGroup(workdir / "sim-logs") as recording:
        spec = dataclasses.replace(settings.fleet, replicas=1)
        sim = await start_fleet(recording, spec, workdir / "sim")
        answers = await record_answers(sim.urls[0], body.encode())
    out: dict[str, dict[str, float]] = {}
    with ProcessGroup(workdir / "fleet-logs") as fleets:
        fleet = await start_instant_fleet(fleets, 3, answers, workdir / "instant")
        for name in front_names:
            with ProcessGroup(workdir / f"front-{len(out)}") as group:
                stack = await fronts[name].start(group, fleet)
                if not stack.processes:
                    raise SystemExit(f"{name}: no front process to trace")
                await check_front(stack.url, body, False)
                url = f"{stack.url}/v1/completions"
                await run_wrk(WrkRun(url, body, warmup))
                outputs = [workdir / f"strace-{len(out)}-{i}.txt"
                           for i in range(len(stack.processes))]
                tracers = [await asyncio.create_subprocess_exec(
                               "strace", "-c", "-f", "-p", str(pid), "-o", str(o),
                               stderr=subprocess.DEVNULL)
                           for (_, pid), o in zip(stack.processes, outputs, strict=True)]
                try:
                    await asyncio.sleep(0.5)  # attached to every thread before the load starts
                    result = await run_wrk(WrkRun(url, body, seconds, rate=rate))
                finally:
                    for tracer in tracers:
                        tracer.send_signal(signal.SIGINT)
                    for tracer in tracers:
                        await asyncio.wait_for(tracer.wait(), 30)
                calls: dict[str, int] = {}
                for o in outputs:
                    for syscall, n in parse_strace_summary(o.read_text()).items():
                        calls[syscall] = calls.get(syscall, 0) + n
                per_request = {k: round(v / result.requests, 3)
                               for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}
                per_request["(total)"] = round(sum(calls.values()) / result.requests, 3)
                per_request["(requests/s achieved)"] = round(result.throughput, 1)
                per_request["(failed)"] = result.failed
                out[name] = per_request
                print(f"{name}: {per_request['(total)']} calls/request at "
                      f"{result.throughput:,.0f} req/s", file=sys.stderr, flush=True)
    return out


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--front", action="append", required=True,
                        help="a saturation section front by its row name (repeatable)")
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--compiled", type=Path, default=None,
                        help="a compiled tree (build/compiled) for the '(mypyc)' fronts")
    args = parser.parse_args()
    peers = PEERS_VENV.resolve() if peers_available(PEERS_VENV) else None
    with tempfile.TemporaryDirectory(prefix="poolgate-syscalls-") as tmp:
        result = asyncio.run(count(args.front, args.rate, args.seconds, args.warmup,
                                   args.compiled.resolve() if args.compiled else None,
                                   peers, Path(tmp)))
    print(json.dumps({"rate": args.rate, "seconds": args.seconds, "fronts": result}, indent=1))


if __name__ == "__main__":
    cli()

"""`make soak`: the gateway under a steady streaming load for N minutes, with faults on the way.

Three simulated replicas (one process each) behind `poolgate serve`; an open-loop client sends
streamed completions at a fixed rate, a share of which hang up mid-stream; half-way through, one
replica is SIGKILLed and started again 5 s later. Every 5 s the gateway's RSS and open file
descriptors are sampled. At the end: requests by outcome, the RSS slope after a warm-up minute,
the descriptors, and the gateway's own counters (requests in flight, per-endpoint in-flight
counts, breaker and connection state) once the load has stopped, which must all be back to 0.

Usage: python -m benchmarks.soak [--minutes 10] [--rate 30] [--out docs/benchmarks/soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from benchmarks.suite.processes import Managed, ProcessGroup, free_port, wait_ready

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: poolgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp, port: {number: 9002}}
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: sims}
spec:
  labels: {app: sim}
  addresses: [%s]
"""
SAMPLE_EVERY = 5.0
WARM_UP = 60.0
RESTART_AFTER = 5.0


@dataclass
class Outcomes:
    """What happened to the requests sent."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: dict[str, str] = field(default_factory=dict)

    def add(self, outcome: str, detail: str = "") -> None:
        self.counts[outcome] += 1
        if detail and outcome not in self.examples:
            self.examples[outcome] = detail[:300]


def _python() -> list[str]:
    return [sys.executable, "-m", "poolgate"]


def _start_replica(group: ProcessGroup, port: int, name: str) -> Managed:
    return group.start(name, [*_python(), "sim", "--replicas", "1", "--port", str(port),
                              "--model", "/model/llama2", "--profile", "fast",
                              "--time-scale", "0.25", "--seed", "7"])


async def _one(session: aiohttp.ClientSession, url: str, n: int, hang_up_after: int | None,
               outcomes: Outcomes) -> None:
    # Distinct prompts (n cycles over --prompts of them), so that the picker spreads the load.
    body = {"model": "/model/llama2", "prompt": f"soak request {n}: " + "words " * 20,
            "max_tokens": 64, "stream": True, "ignore_eos": True}
    try:
        async with session.post(f"{url}/v1/completions", json=body) as r:
            if r.status != 200:
                outcomes.add(f"status_{r.status}", await r.text())
                return
            events = 0
            tail = b""
            async for chunk in r.content.iter_any():
                events += chunk.count(b"data: ")
                tail = (tail + chunk)[-32:]
                if hang_up_after is not None and events >= hang_up_after:
                    outcomes.add("client_hung_up")
                    return
            outcomes.add("ok" if b"[DONE]" in tail else "cut_without_done")
    except aiohttp.ClientPayloadError as e:
        outcomes.add("stream_cut", str(e))
    except (aiohttp.ClientError, TimeoutError) as e:
        outcomes.add("client_error", f"{type(e).__name__}: {e}")


def _sample(pid: int) -> tuple[int, int]:
    """(RSS in KiB, open descriptors) of a process."""
    rss = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def _slope(samples: list[tuple[float, int, int]]) -> float:
    """Least-squares RSS slope in KiB per minute over the samples after the warm-up."""
    points = [(t, rss) for t, rss, _ in samples if t >= WARM_UP]
    if len(points) < 3:
        return float("nan")
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    cov = sum((t - mean_t) * (r - mean_r) for t, r in points)
    return 60.0 * cov / var if var else float("nan")


async def _run(minutes: float, rate: float, hang_up_share: float, prompts: int, seed: int,
               work: Path) -> dict[str, Any]:
    rnd = random.Random(seed)
    duration = minutes * 60.0
    with ProcessGroup(work / "logs") as group:
        ports = [free_port() for _ in range(3)]
        replicas = [_start_replica(group, p, f"sim-{i}") for i, p in enumerate(ports)]
        for port, replica in zip(ports, replicas, strict=True):
            await wait_ready([f"http://127.0.0.1:{port}/health"], replica)
        config = work / "gw.yaml"
        config.write_text(GATEWAY % ", ".join(f"127.0.0.1:{p}" for p in ports))
        gw_port, admin = free_port(), free_port()
        gateway = group.start("gateway", [*_python(), "serve", "-f", str(config), "--port",
                                          str(gw_port), "--admin-port", str(admin), "--host",
                                          "127.0.0.1", "--access-log", "off"])
        await wait_ready([f"http://127.0.0.1:{admin}/readyz"], gateway)
        url, admin_url = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{admin}"
        outcomes = Outcomes()
        samples: list[tuple[float, int, int]] = []
        tasks: set[asyncio.Task[None]] = set()
        restarted_at: float | None = None
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector,
                                         timeout=aiohttp.ClientTimeout(total=120)) as session:
            started = time.monotonic()
            next_sample = 0.0
            i = 0
            while (elapsed := time.monotonic() - started) < duration:
                if elapsed >= next_sample:
                    rss, fds = _sample(gateway.pid)
                    samples.append((round(elapsed, 1), rss, fds))
                    next_sample += SAMPLE_EVERY
                if restarted_at is None and elapsed >= duration / 2:
                    replicas[0].proc.kill()
                    restarted_at = elapsed
                elif (restarted_at is not None and replicas[0].proc.poll() is not None
                      and elapsed >= restarted_at + RESTART_AFTER):
                    replicas[0] = _start_replica(group, ports[0], "sim-0-restarted")
                hang_up = rnd.randint(1, 30) if rnd.random() < hang_up_share else None
                task = asyncio.create_task(_one(session, url, i % prompts if prompts else i, hang_up,
                                                 outcomes))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                i += 1
                await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            await asyncio.gather(*tasks)
            await asyncio.sleep(1.0)  # the gateway finishes what the client ended
            async with session.get(f"{admin_url}/status") as r:
                status = await r.json()
            rss, fds = _sample(gateway.pid)
            samples.append((round(time.monotonic() - started, 1), rss, fds))
    endpoints = {e["address"]: {"in_flight": e["in_flight"],
                                "awaiting_first_token": e["awaiting_first_token"]}
                 for pool in status["pools"].values() for e in pool["endpoints"]}
    return {
        "minutes": minutes, "rate": rate, "hang_up_share": hang_up_share,
        "distinct_prompts": prompts or "all",
        "requests": sum(outcomes.counts.values()), "outcomes": dict(outcomes.counts),
        "examples": outcomes.examples,
        "restart": {"killed_at_s": restarted_at, "restarted_after_s": RESTART_AFTER},
        "rss_kib": {"first": samples[0][1], "after_warm_up": next(
            (r for t, r, _ in samples if t >= WARM_UP), samples[-1][1]), "last": samples[-1][1],
            "slope_kib_per_min_after_warm_up": round(_slope(samples), 1)},
        "fds": {"first": samples[0][2], "max": max(f for _, _, f in samples),
                "last": samples[-1][2]},
        "after_the_load": {"active_requests": status["active_requests"],
                           "endpoints": endpoints},
        "samples": samples,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=30.0, help="streamed requests per second")
    parser.add_argument("--hang-up-share", type=float, default=0.1,
                        help="share of clients that disconnect mid-stream")
    parser.add_argument("--prompts", type=int, default=0,
                        help="cycle over this many distinct prompts (0: every prompt new, which "
                             "fills the picker's prefix index up to its bounds)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="write the report here (JSON)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="poolgate-soak-") as tmp:
        report = asyncio.run(_run(args.minutes, args.rate, args.hang_up_share, args.prompts,
                                  args.seed, Path(tmp)))
    text = orjson.dumps(report, option=orjson.OPT_INDENT_2).decode()
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    summary = {k: v for k, v in report.items() if k != "samples"}
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())
    after = report["after_the_load"]
    clean = after["active_requests"] == 0 and all(
        e["in_flight"] == 0 and e["awaiting_first_token"] == 0 for e in after["endpoints"].values())
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())

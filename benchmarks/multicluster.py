"""Two-region load ramp for seed 002: per-region share of traffic and TTFT p90 over time.

Starts two simulated clusters on this machine (gke-west in europe-west3, the gateway's region;
gke-east in us-east4, behind `--fault-latency` standing for the cross-region round trip), the
gateway from `examples/seed-002-multi-cluster` (the seed's manifests unmodified, CUSTOM_METRICS
with a 60 % KV-cache target), then raises the number of concurrent streaming clients step by
step. Prints a Markdown table (what docs/multicluster.md shows):

    .venv/bin/python benchmarks/multicluster.py [--steps 1,2,4,8,12,16] [--step-seconds 6]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import aiohttp
import orjson
import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "seed-002-multi-cluster"
WEST, EAST = "europe-west3", "us-east4"
SIM_ARGS = ["--profile", "h100-llama3-8b", "--kv-cache-blocks", "160", "--block-size", "16", "--max-model-len", "1024",
            "--served-model-name", "food-review-1", "--seed", "3"]


def free_ports(n: int) -> int:
    """The first of `n` consecutive free ports on 127.0.0.1."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            base = int(s.getsockname()[1])
        try:
            socks = []
            for p in range(base, base + n):
                sock = socket.socket()
                socks.append(sock)
                sock.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()


def wait_ready(url: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as r:
            if r.status == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{url} not ready")


def write_config(directory: Path, west: int, east: int) -> Path:
    """The example's manifests with the local endpoints moved to this run's ports."""
    config = directory / "config"
    shutil.copytree(EXAMPLE / "seed", config / "seed")
    shutil.copy(EXAMPLE / "local" / "pools.yaml", config / "pools.yaml")
    docs = [{"apiVersion": "poolgate.dev/v1alpha1", "kind": "LocalEndpoints",
             "metadata": {"name": name},
             "spec": {"labels": {"app": "vllm-llama3-8b-instruct"}, "cluster": cluster,
                      "region": region,
                      "addresses": [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]}}
            for name, cluster, region, base in (("west-pods", "gke-west", WEST, west),
                                                ("east-pods", "gke-east", EAST, east))]
    (config / "endpoints.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return config


async def client(session: aiohttp.ClientSession, url: str, stop: float, rng: random.Random,
                 ttfts: list[tuple[float, float]]) -> None:
    """One closed-loop streaming client until `stop`; records (arrival, TTFT)."""
    while time.monotonic() < stop:
        words = " ".join(f"w{rng.randrange(10_000)}" for _ in range(rng.randrange(150, 300)))
        body = {"model": "food-review-1", "prompt": words, "max_tokens": rng.randrange(100, 200),
                "stream": True, "ignore_eos": True}
        started = time.monotonic()
        first: float | None = None
        async with session.post(url, json=body) as r:
            async for _ in r.content.iter_any():
                if first is None:
                    first = time.monotonic() - started
        if first is not None and r.status == 200:
            ttfts.append((started, first))


def log_lines(log: Path) -> list[str]:
    """The gateway's access-log lines so far (a small file: read between load steps)."""
    return log.read_text().splitlines() if log.exists() else []


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else float("nan")


async def ramp(url: str, log: Path, west: set[str], steps: list[int],
               seconds: float) -> list[str]:
    rows = ["| step | clients | requests | share europe-west3 | share us-east4 | TTFT p90 (ms) |",
            "| --- | --- | --- | --- | --- | --- |"]
    rng = random.Random(7)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
        for i, clients in enumerate(steps, 1):
            done = len(await asyncio.to_thread(log_lines, log))
            ttfts: list[tuple[float, float]] = []
            stop = time.monotonic() + seconds
            await asyncio.gather(*(client(session, url, stop, rng, ttfts)
                                   for _ in range(clients)))
            lines = (await asyncio.to_thread(log_lines, log))[done:]
            served = [orjson.loads(line)["endpoint"] for line in lines if line]
            near = sum(1 for e in served if e in west)
            total = max(1, len(served))
            rows.append(f"| {i} | {clients} | {len(served)} | {100 * near / total:.0f} % | "
                        f"{100 * (len(served) - near) / total:.0f} % | "
                        f"{1000 * p90([t for _, t in ttfts]):.0f} |")
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", default="1,2,4,8,12,16",
                        help="concurrent clients per step, comma-separated")
    parser.add_argument("--step-seconds", type=float, default=6.0)
    parser.add_argument("--east-latency", type=float, default=0.08,
                        help="simulated seconds added to every us-east4 request")
    args = parser.parse_args()
    steps = [int(x) for x in args.steps.split(",") if x.strip()]
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        west, east = free_ports(2), free_ports(2)
        port, admin = free_ports(1), free_ports(1)
        log = directory / "access.log"
        python = [sys.executable, "-m", "poolgate"]
        try:
            for base, extra in ((west, []), (east, ["--fault-latency", str(args.east_latency)])):
                procs.append(subprocess.Popen([*python, "sim", "--replicas", "2", "--port",
                                               str(base), *SIM_ARGS, *extra],
                                              stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))
            config = write_config(directory, west, east)
            procs.append(subprocess.Popen(
                [*python, "serve", "-f", str(config), "--port", str(port), "--admin-port",
                 str(admin), "--host", "127.0.0.1", "--region", WEST, "--region-order",
                 f"{WEST},{EAST}", "--access-log", str(log), "--seed", "1", "--log-level",
                 "error"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            wait_ready(f"http://127.0.0.1:{admin}/readyz")
            rows = asyncio.run(ramp(f"http://127.0.0.1:{port}/v1/completions", log,
                                    {f"127.0.0.1:{west}", f"127.0.0.1:{west + 1}"}, steps,
                                    args.step_seconds))
        finally:
            for p in procs:
                if p.poll() is None:
                    os.kill(p.pid, signal.SIGTERM)
            for p in procs:
                p.wait(timeout=30)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

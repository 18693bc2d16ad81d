"""The two-region load ramp of seed 002 (issue 6): per-region share of traffic and TTFT p90 as
the load grows, with GCPBackendPolicy CUSTOM_METRICS at the seed's 60 % KV-cache target."""

from __future__ import annotations

import asyncio
import random
import shutil
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from benchmarks.suite.model import Section
from benchmarks.suite.processes import ProcessGroup, free_port, free_port_range, wait_ready
from poolgate.bench.errors import BenchError

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "seed-002-multi-cluster"
NEAR, FAR = "europe-west3", "us-east4"
MODEL = "food-review-1"


@dataclass(frozen=True)
class RampSettings:
    """Closed-loop streaming clients raised step by step against two regions of two replicas."""

    steps: tuple[int, ...] = (1, 2, 4, 8, 12, 16)
    step_seconds: float = 6.0
    far_latency: float = 0.08  # simulated seconds added to every request in the far region
    kv_cache_blocks: int = 160
    seed: int = 3


def ramp_settings(quick: bool) -> RampSettings:
    return RampSettings(steps=(1, 4, 12), step_seconds=4.0) if quick else RampSettings()


def _sim_argv(base: int, s: RampSettings, far: bool) -> list[str]:
    argv = [sys.executable, "-m", "poolgate", "sim", "--replicas", "2", "--port", str(base),
            "--host", "127.0.0.1", "--profile", "h100-llama3-8b", "--kv-cache-blocks",
            str(s.kv_cache_blocks), "--max-model-len", "1024", "--served-model-name", MODEL,
            "--seed", str(s.seed)]
    return [*argv, "--fault-latency", str(s.far_latency)] if far else argv


def _config(directory: Path, near: int, far: int) -> Path:
    """The example's manifests (the seed's, unmodified) with its endpoints on this run's ports."""
    if not EXAMPLE.is_dir():
        raise BenchError(f"{EXAMPLE} is missing: run the suite from a poolgate source checkout")
    config = directory / "config"
    shutil.copytree(EXAMPLE / "seed", config / "seed")
    shutil.copy(EXAMPLE / "local" / "pools.yaml", config / "pools.yaml")
    docs = [{"apiVersion": "poolgate.dev/v1alpha1", "kind": "LocalEndpoints",
             "metadata": {"name": name},
             "spec": {"labels": {"app": "vllm-llama3-8b-instruct"}, "cluster": cluster,
                      "region": region,
                      "addresses": [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]}}
            for name, cluster, region, base in (("west-pods", "gke-west", NEAR, near),
                                                ("east-pods", "gke-east", FAR, far))]
    (config / "endpoints.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return config


async def _client(session: aiohttp.ClientSession, url: str, stop: float, rng: random.Random,
                  ttfts: list[float]) -> None:
    """One closed-loop streaming client until `stop`; records each request's TTFT."""
    while time.monotonic() < stop:
        prompt = " ".join(f"w{rng.randrange(10_000)}" for _ in range(rng.randrange(150, 300)))
        body = {"model": MODEL, "prompt": prompt, "max_tokens": rng.randrange(100, 200),
                "stream": True, "ignore_eos": True}
        started = time.monotonic()
        first: float | None = None
        async with session.post(url, json=body) as r:
            async for _ in r.content.iter_any():
                if first is None:
                    first = time.monotonic() - started
        if first is not None and r.status == 200:
            ttfts.append(first)


def _p90(values: list[float]) -> float | None:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if ordered else None


async def run(s: RampSettings, workdir: Path) -> Section:
    """Start both regions and the gateway, ramp the load, return the section."""
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    started = time.monotonic()
    near, far = free_port_range(2), free_port_range(2)
    port, admin = free_port(), free_port()
    access_log = workdir / "access.log"
    gateway_argv = [sys.executable, "-m", "poolgate", "serve", "-f", str(workdir / "config"),
                    "--port", str(port), "--admin-port", str(admin), "--host", "127.0.0.1",
                    "--region", NEAR, "--region-order", f"{NEAR},{FAR}", "--access-log",
                    str(access_log), "--seed", "1", "--log-level", "error", "--no-watch"]
    steps: list[dict[str, Any]] = []
    with ProcessGroup(workdir / "logs") as group:
        sims = [group.start("sim-near", _sim_argv(near, s, far=False)),
                group.start("sim-far", _sim_argv(far, s, far=True))]
        for sim, base in zip(sims, (near, far), strict=True):
            await wait_ready([f"http://127.0.0.1:{base + i}/health" for i in range(2)], sim)
        _config(workdir, near, far)
        gw = group.start("gateway", gateway_argv)
        await wait_ready([f"http://127.0.0.1:{admin}/readyz"], gw)
        near_addresses = {f"127.0.0.1:{near}", f"127.0.0.1:{near + 1}"}
        rng = random.Random(s.seed)
        url = f"http://127.0.0.1:{port}/v1/completions"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            for clients in s.steps:
                done = len(_log_lines(access_log))
                ttfts: list[float] = []
                stop = time.monotonic() + s.step_seconds
                await asyncio.gather(*(_client(session, url, stop, rng, ttfts)
                                       for _ in range(clients)))
                served = [orjson.loads(line)["endpoint"]
                          for line in _log_lines(access_log)[done:] if line]
                in_near = sum(1 for e in served if e in near_addresses)
                p90 = _p90(ttfts)
                steps.append({"clients": clients, "requests": len(served),
                              "near_share": in_near / len(served) if served else None,
                              "ttft_p90_ms": None if p90 is None else 1000 * p90})
    commands = [" ".join(_sim_argv(8001, s, far=False)), " ".join(_sim_argv(8101, s, far=True)),
                "python -m poolgate serve -f CONFIG --port $PORT --admin-port $ADMIN_PORT "
                f"--host 127.0.0.1 --region {NEAR} --region-order {NEAR},{FAR} "
                "--access-log ACCESS_LOG --seed 1 --no-watch"]
    return Section(
        name="multicluster", created_at=started_at, duration_s=time.monotonic() - started,
        settings={"steps": list(s.steps), "step_seconds": s.step_seconds,
                  "far_latency_s": s.far_latency, "kv_cache_blocks": s.kv_cache_blocks,
                  "seed": s.seed},
        commands=commands, extra={"steps": steps},
    )


def _log_lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def plot(section: Section, path: Path) -> None:
    """Share of requests per region (bars) and TTFT p90 (line) at each load step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = section.extra["steps"]
    labels = [str(st["clients"]) for st in steps]
    near = [100 * (st["near_share"] or 0.0) for st in steps]
    far = [100 - n if st["requests"] else 0.0 for n, st in zip(near, steps, strict=True)]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.bar(labels, near, label=f"{NEAR} (the gateway's region)", color="#4C72B0")
    ax.bar(labels, far, bottom=near, label=f"{FAR} (spill-over)", color="#DD8452")
    ax.set_xlabel("concurrent streaming clients")
    ax.set_ylabel("share of requests (%)")
    ax.set_ylim(0, 100)
    ttft = ax.twinx()
    ttft.plot(labels, [st["ttft_p90_ms"] or 0.0 for st in steps], color="black", marker="o",
              label="TTFT p90")
    ttft.set_ylabel("TTFT p90 (ms)")
    bars, bar_labels = ax.get_legend_handles_labels()
    line, line_labels = ttft.get_legend_handles_labels()
    ax.legend(bars + line, bar_labels + line_labels, loc="upper center",
              bbox_to_anchor=(0.5, -0.2), ncol=3, fontsize=8, frameon=False)
    ax.set_title("Seed 002: CUSTOM_METRICS at 60 % KV-cache utilisation")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown(section: Section | None, plot_dir: str) -> str:
    """The report's multi-cluster section."""
    title = "## 5. Multi-cluster spill-over: two regions, a load ramp (issue 6)\n"
    if section is None:
        return title + "\nNot measured yet: `python -m benchmarks.suite --only multicluster`.\n"
    s = section.settings
    rows = ["| clients | requests | share " + NEAR + " | share " + FAR + " | TTFT p90 |",
            "| --- | --- | --- | --- | --- |"]
    for st in section.extra["steps"]:
        share = st["near_share"]
        near = "-" if share is None else f"{100 * share:.0f} %"
        far = "-" if share is None else f"{100 * (1 - share):.0f} %"
        p90 = "-" if st["ttft_p90_ms"] is None else f"{st['ttft_p90_ms']:.0f} ms"
        rows.append(f"| {st['clients']} | {st['requests']} | {near} | {far} | {p90} |")
    plot_line = f"\n![multicluster]({plot_dir}/{section.plot})\n" if section.plot else ""
    commands = "\n".join(section.commands)
    return f"""{title}
The seed 002 example (`examples/seed-002-multi-cluster`, the seed's manifests unmodified): two
simulated clusters of two H100 Llama-3-8B replicas each with a small KV cache
({s['kv_cache_blocks']} blocks of 16 tokens), gke-west in {NEAR} (the gateway's `--region`) and
gke-east in {FAR}, behind {1000 * s['far_latency_s']:.0f} ms of simulated network latency;
`GCPBackendPolicy` `CUSTOM_METRICS` with the seed's 60 % target on `vllm:kv_cache_usage_perc`.
Closed-loop streaming clients (150-300-word prompts, 100-200 tokens out) are raised every
{s['step_seconds']:.0f} s; the region of every request comes from the gateway's access log.

_Measured {section.created_at} in {section.duration_s:.0f} s._

{chr(10).join(rows)}
{plot_line}
Under light load every request stays in {NEAR}; once its replicas pass 60 % KV-cache utilisation
the excess spills to {FAR}, whose requests pay the added latency, and TTFT p90 rises with it.

```bash
{commands}
```
"""

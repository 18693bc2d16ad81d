"""Bringing up what one run measures: a simulated fleet and the front in front of it (nothing,
the poolgate gateway, or a peer router), each in its own process on free ports."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.suite.commands import (
    ADMIN_PORT,
    CONFIG_DIR,
    HOST,
    METRICS_PORT,
    PORT,
    Peer,
    SimSpec,
    display,
    poolgate_argv,
    replica_urls_shown,
    serve_argv,
    sim_argv,
)
from benchmarks.suite.manifests import write_config_dir
from benchmarks.suite.processes import (
    Managed,
    ProcessGroup,
    free_port,
    free_port_range,
    wait_file,
    wait_ready,
)


@dataclass(frozen=True, slots=True)
class Fleet:
    """A running `poolgate sim` and the base URL of each replica."""

    process: Managed
    urls: tuple[str, ...]
    config_dir: Path  # holds the gateway manifests and the LocalEndpoints the sim wrote

    @property
    def metrics_urls(self) -> tuple[str, ...]:
        return tuple(f"{u}/metrics" for u in self.urls)


@dataclass(frozen=True, slots=True)
class Front:
    """What the load generator talks to; `pid` is the process whose CPU is measured."""

    url: str
    pid: int | None
    shown: str | None  # the command as the report shows it; None when the client goes direct


StartFront = Callable[[ProcessGroup, Fleet], Awaitable[Front]]


async def start_fleet(group: ProcessGroup, spec: SimSpec, workdir: Path) -> Fleet:
    """Start the simulator with `spec` and wait until every replica answers /health."""
    config_dir = workdir / "config"
    endpoints = write_config_dir(config_dir)
    endpoints.unlink(missing_ok=True)
    port = free_port_range(spec.replicas)
    proc = group.start("sim", sim_argv(spec, port, endpoints))
    urls = tuple(f"http://{HOST}:{port + i}" for i in range(spec.replicas))
    await wait_file(endpoints, proc)
    await wait_ready([f"{u}/health" for u in urls], proc)
    return Fleet(proc, urls, config_dir)


async def direct(group: ProcessGroup, fleet: Fleet) -> Front:
    """No front: the client talks to the first replica."""
    del group
    return Front(fleet.urls[0], None, None)


def gateway(profile: str | None, extra: tuple[str, ...] = (),
            env: dict[str, str] | None = None) -> StartFront:
    """A starter for `poolgate serve` over the fleet's pool with scheduler `profile` (`env`:
    added to its environment)."""

    async def start(group: ProcessGroup, fleet: Fleet) -> Front:
        port, admin = free_port(), free_port()
        argv = serve_argv(fleet.config_dir, port, admin, profile, extra)
        proc = group.start(f"gateway-{profile or 'builtin'}", argv, env)
        await wait_ready([f"http://{HOST}:{admin}/readyz"], proc)
        shown = display(serve_argv(CONFIG_DIR, PORT, ADMIN_PORT, profile, extra))
        return Front(f"http://{HOST}:{port}", proc.pid, shown)

    return start


def peer(spec: Peer, venv: Path, policy: str, cwd: Path) -> StartFront:
    """A starter for a peer router with `policy` in front of every replica of the fleet."""

    async def start(group: ProcessGroup, fleet: Fleet) -> Front:
        port, metrics = free_port(), free_port()
        argv = spec.argv(venv, port, metrics, list(fleet.urls), policy)
        proc = group.start(f"{spec.name}-{policy}", argv)
        shown = display(spec.argv(venv, PORT, METRICS_PORT, replica_urls_shown(len(fleet.urls)),
                                  policy), cwd)
        # Both routers listen only once their workers passed a health check; /v1/models then
        # answers 200 (vllm-router from its own model list, sglang-router from a worker).
        await wait_ready([f"http://{HOST}:{port}/v1/models"], proc, timeout=120)
        return Front(f"http://{HOST}:{port}", proc.pid, shown)

    return start


def serve_has_scheduler_profile() -> bool:
    """Whether this installation's `poolgate serve` accepts `--scheduler-profile`."""
    # A wide terminal, so the help table does not cut the option's name.
    out = subprocess.run(poolgate_argv("serve", "--help"), capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=60, check=False)
    return "--scheduler-profile" in out.stdout

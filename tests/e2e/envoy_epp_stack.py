"""Envoy + `poolgate epp` for end-to-end tests: the picker, the bootstrap rendered by `poolgate
envoy-config` (what users run), Envoy itself, and what each of them logs or reports.

Every process runs on 127.0.0.1 on free ports and is stopped by PID (the caller's
`ProcessGroup`). Envoy's access log (stdout, one JSON line per request, `endpoint` being
`%UPSTREAM_HOST%`) is flushed every 20 ms here instead of Envoy's default 10 s, so a test can
poll it for the requests it has just made.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
import yaml
from multidict import CIMultiDict

from tests.e2e.envoy_process import envoy_binary
from tests.support.processes import (
    ProcessGroup,
    ServerProcess,
    free_port,
    poolgate_command,
    wait_http,
)

Record = dict[str, Any]

# Shared-memory base ids distinct from tests/e2e/envoy_process.py's (two Envoys with one id
# refuse to start): that module counts up from pid % 10_000 * 100; this one from 50 above it.
_BASE_IDS = itertools.count(os.getpid() % 10_000 * 100 + 50)

EPP_CLUSTER = "poolgate-epp"
# The listeners' request counters (not the admin interface's).
_REQUESTS = r"^http\.http-[0-9]+\.downstream_rq_(total|active)$"


def json_lines(text: str) -> list[Record]:
    """The JSON records among a process's output lines (its log lines are not JSON)."""
    return [orjson.loads(line) for line in text.splitlines() if line.startswith("{")]


async def poll_records(proc: ServerProcess, count: int, where: Callable[[Record], bool],
                       timeout: float = 10.0) -> list[Record]:
    """The access-log records of `proc` that `where` selects, once there are `count` of them
    (each process writes a request's record just after the client has its last byte)."""
    deadline = time.monotonic() + timeout
    while True:
        records = [r for r in json_lines(proc.output()) if where(r)]
        if len(records) >= count:
            return records
        assert time.monotonic() < deadline, \
            f"{len(records)} of {count} records after {timeout}s:\n{proc.output()[-4000:]}"
        await asyncio.sleep(0.02)


@dataclass
class Picker:
    """A running `poolgate epp`."""

    proc: ServerProcess
    grpc_port: int
    admin_port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def status(self) -> Record:
        async with aiohttp.ClientSession() as s, s.get(f"{self.admin}/status") as r:
            assert r.status == 200
            found: Record = await r.json()
            return found

    async def endpoints(self, pool: str) -> dict[str, Record]:
        """`/status` of one pool's endpoints, by address."""
        status = await self.status()
        return {e["address"]: e for e in status["pools"][pool]["endpoints"]}

    async def wait_endpoints(self, pool: str, ok: Callable[[dict[str, Record]], bool],
                             what: str, timeout: float = 10.0) -> dict[str, Record]:
        """Poll `/status` until the pool's endpoints satisfy `ok`."""
        deadline = time.monotonic() + timeout
        while True:
            endpoints = await self.endpoints(pool)
            if ok(endpoints):
                return endpoints
            assert time.monotonic() < deadline, f"never saw {what}: {endpoints}"
            await asyncio.sleep(0.02)

    async def records(self, count: int, where: Callable[[Record], bool] = lambda r: True,
                      ) -> list[Record]:
        return await poll_records(self.proc, count, where)

    def logged(self) -> list[Record]:
        """Every access-log record so far: the picker writes (and flushes) one as it lets go of
        a request, so once nothing is in flight every finished request is there."""
        return json_lines(self.proc.output())


def start_picker(procs: ProcessGroup, manifests: Path, *extra: str,
                 grpc_port: int | None = None) -> Picker:
    """`poolgate epp -f MANIFESTS --grpc-port P --host 127.0.0.1 --admin-port A`, ready (every
    endpoint scraped once, successfully or not)."""
    port, admin = grpc_port or free_port(), free_port()
    proc = procs.start(poolgate_command(
        "epp", "-f", str(manifests), "--grpc-port", str(port), "--host", "127.0.0.1",
        "--admin-port", str(admin), "--seed", "1", *extra))
    wait_http(f"http://127.0.0.1:{admin}/readyz", proc=proc)
    return Picker(proc, port, admin)


@dataclass
class Envoy:
    """A running Envoy; `port` is its one listener."""

    proc: ServerProcess
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def clusters(self) -> list[str]:
        """Admin `/clusters`, one line per cluster, host and stat."""
        with urllib.request.urlopen(f"{self.admin}/clusters", timeout=2) as r:
            return list(r.read().decode().splitlines())

    def wait_picker_health(self, healthy: bool, timeout: float = 10.0) -> None:
        """Poll `/clusters` until Envoy's gRPC health check has found the picker (un)healthy."""
        deadline = time.monotonic() + timeout
        while True:
            flags = [line.rsplit("::", 1)[1] for line in self.clusters()
                     if line.startswith(f"{EPP_CLUSTER}::") and "::health_flags::" in line]
            if flags and (flags == ["healthy"]) == healthy:
                return
            assert time.monotonic() < deadline, f"picker health flags: {flags}"
            time.sleep(0.02)

    async def records(self, count: int, where: Callable[[Record], bool] = lambda r: True,
                      ) -> list[Record]:
        """Envoy's access-log records (`endpoint`: `%UPSTREAM_HOST%`, the host that served)."""
        return await poll_records(self.proc, count, where)

    def completed(self) -> int:
        """Downstream requests Envoy is done with: its listeners' `downstream_rq_total` less
        `downstream_rq_active` (`downstream_rq_completed` counts a request whose response is
        still streaming)."""
        with urllib.request.urlopen(f"{self.admin}/stats?filter={quote(_REQUESTS)}",
                                    timeout=2) as r:
            lines = r.read().decode().splitlines()
        stats = [line.rsplit(": ", 1) for line in lines if line]
        return sum(int(value) * (-1 if name.endswith("active") else 1) for name, value in stats)

    async def settled(self) -> list[Record]:
        """The access-log records of every request Envoy has completed so far (a record can
        reach the log up to one flush interval after the client has its response)."""
        return await self.records(self.completed())


def render(manifests: Path, out: Path, *, port: int, admin_port: int, epp: str) -> Record:
    """`poolgate envoy-config` for one listener on `port` (Envoy's admin on `admin_port`), the
    ext_proc filter pointing at `epp`; the bootstrap written to `out` and returned parsed."""
    done = subprocess.run(
        [sys.executable, "-m", "poolgate", "envoy-config", "-f", str(manifests), "--host",
         "127.0.0.1", "--port", str(port), "--admin-port", str(admin_port), "--epp-address",
         epp, "-o", str(out)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    config: Record = yaml.safe_load(out.read_text())
    return config


def start_envoy(procs: ProcessGroup, tmp: Path, manifests: Path, picker: Picker, *,
                edit: Callable[[Record], None] | None = None, name: str = "envoy") -> Envoy:
    """Envoy from the rendered bootstrap (`edit` may change it first), one worker, ready, and
    the picker found healthy by Envoy's health check (so the first request is picked)."""
    port, admin = free_port(), free_port()
    bootstrap = tmp / f"{name}.yaml"
    config = render(manifests, bootstrap, port=port, admin_port=admin, epp=picker.address)
    if edit is not None:
        edit(config)
        bootstrap.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = procs.start([envoy_binary(), "-c", str(bootstrap), "--base-id", str(next(_BASE_IDS)),
                        "--concurrency", "1", "-l", "warning",
                        "--file-flush-interval-msec", "20"])
    wait_http(f"http://127.0.0.1:{admin}/ready", proc=proc)
    envoy = Envoy(proc, port, admin)
    envoy.wait_picker_health(healthy=True)
    return envoy


def http_filters(config: Record) -> list[Record]:
    """The HTTP filter list of the bootstrap's (only) listener, to edit in place."""
    (listener,) = config["static_resources"]["listeners"]
    (chain,) = listener["filter_chains"]
    (hcm,) = chain["filters"]
    found: list[Record] = hcm["typed_config"]["http_filters"]
    return found


async def post(url: str, body: Mapping[str, Any], *, host: str | None = None,
               headers: Mapping[str, str] | None = None,
               ) -> tuple[int, CIMultiDict[str], bytes]:
    """POST a JSON body to Envoy's chat endpoint: status, headers and body bytes."""
    sent = dict(headers or {})
    if host is not None:
        sent["host"] = host
    async with aiohttp.ClientSession() as s, \
            s.post(f"{url}/v1/chat/completions", json=body, headers=sent) as r:
        return r.status, r.headers.copy(), await r.read()

"""`poolgate serve --reuse-port`: several gateway processes listening on one port, the kernel
spreading the client connections among them."""

from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1_YAML,
    ROUTE_TO_POOL_YAML,
    start_fleet,
    write_endpoints,
)
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

ROUTE = GATEWAY_YAML + POOL_V1_YAML + "---\n" + ROUTE_TO_POOL_YAML
CONNECTIONS = 40


def _serve(config: Path, port: int, log: Path, *extra: str) -> list[str]:
    return poolgate_command("serve", "-f", str(config), "--host", "127.0.0.1", "--port",
                            str(port), "--admin-port", str(free_port()), "--access-log",
                            str(log), "--no-watch", *extra)


def _served(log: Path) -> int:
    """The completions a gateway's access log records as answered 200."""
    if not log.exists():
        return 0
    return sum(1 for line in log.read_text().splitlines()
               if (rec := orjson.loads(line))["status"] == 200 and rec["path"] == "/v1/completions")


async def test_two_processes_share_the_port_and_each_serves_its_connections(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1)
    config = tmp_path / "config"
    config.mkdir()
    (config / "gateway.yaml").write_text(ROUTE)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    port = free_port()
    logs = [tmp_path / "first.log", tmp_path / "second.log"]
    for log in logs:
        proc = procs.start(_serve(config, port, log, "--reuse-port"))
        wait_http(f"http://127.0.0.1:{port}/v1/models", proc=proc)

    # Without the option a third process cannot bind the port the two share.
    done = await asyncio.to_thread(subprocess.run, _serve(config, port, tmp_path / "third.log"),
                                   capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "already in use" in done.stderr.strip().splitlines()[-1], done.stderr

    body = {"model": "/model/llama2", "prompt": "hello", "max_tokens": 2}
    # A new connection for each request: the kernel picks a listening process for each.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        for _ in range(CONNECTIONS):
            async with s.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as r:
                assert r.status == 200, await r.text()
                await r.read()
    # A record is written just after the client has the last byte: wait for all of them.
    deadline = time.monotonic() + 10
    while sum(counts := [_served(log) for log in logs]) < CONNECTIONS:
        assert time.monotonic() < deadline, counts
        await asyncio.sleep(0.05)
    # Each a gateway of its own, each served some (all 40 to one: a chance of 2 in 2^40).
    assert sum(counts) == CONNECTIONS and min(counts) > 0, counts

"""Gateway replicas sharing their in-flight counts through a real redis-server, end to end.

Replica 1 serves a pool of endpoint X only, replica 2 a pool of X and Y, both with the
`least-in-flight` profile. Streams held open through replica 1 load X; replica 2 has nothing in
flight itself, so only the shared view can tell it that X is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1ALPHA2_YAML,
    Fleet,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.e2e.redis_fixture import RedisServer, redis_server, start_redis
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

__all__ = ["redis_server"]

ROUTE = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
---
""" + POOL_V1ALPHA2_YAML

HELD = 4  # streams held open through replica 1
MODEL = "/model/llama2"


def _config(tmp_path: Path, name: str, addresses: list[str]) -> Path:
    config = tmp_path / name
    config.mkdir()
    (config / "pool.yaml").write_text(ROUTE)
    write_endpoints(config, {"app": "sim"}, addresses)
    return config


def _shared(redis: RedisServer, replica: str) -> tuple[str, ...]:
    return ("--scheduler-profile", "least-in-flight", "--shared-load-redis", redis.endpoint,
            "--shared-load-replica-id", replica, "--shared-load-interval", "0.05")


async def _hold(s: aiohttp.ClientSession, gw: RunningGateway) -> None:
    """A long stream through `gw`, read until it ends or is cancelled."""
    body = {"model": MODEL, "prompt": "hold", "max_tokens": 1800, "ignore_eos": True,
            "stream": True}
    async with s.post(f"{gw.url}/v1/completions", json=body) as r:
        assert r.status == 200
        await r.read()


async def _complete(s: aiohttp.ClientSession, url: str) -> int:
    body = {"model": MODEL, "prompt": "short", "max_tokens": 2, "ignore_eos": True}
    async with s.post(f"{url}/v1/completions", json=body) as r:
        await r.read()
        return r.status


async def _live_endpoint(s: aiohttp.ClientSession, admin: str, address: str) -> dict[str, Any]:
    async with s.get(f"{admin}/api/live") as r:
        doc = await r.json()
    endpoint: dict[str, Any] = next(e for e in doc["pools"][0]["endpoints"]
                                    if e["address"] == address)
    return endpoint


async def _metric(s: aiohttp.ClientSession, admin: str, name: str, **labels: str) -> float:
    async with s.get(f"{admin}/metrics") as r:
        text = await r.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


async def _until(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"never saw {what}"
        await asyncio.sleep(0.05)


async def _peer_load(s: aiohttp.ClientSession, admin: str, address: str) -> int:
    return int((await _live_endpoint(s, admin, address))["peer_in_flight"])


async def _served_by(gw: RunningGateway, count: int) -> list[str]:
    records = await gw.access_log(count, lambda rec: rec.get("status") == 200)
    return [rec["endpoint"] for rec in records]


def _start_pair(procs: ProcessGroup, tmp_path: Path, fleet: Fleet,
                redis: RedisServer) -> tuple[RunningGateway, RunningGateway]:
    x = fleet.addresses[0]
    one = start_gateway(procs, _config(tmp_path, "one", [x]), *_shared(redis, "r1"))
    two = start_gateway(procs, _config(tmp_path, "two", fleet.addresses), *_shared(redis, "r2"))
    return one, two


async def _cancel(tasks: list[asyncio.Task[None]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def test_a_replica_sends_new_requests_away_from_what_others_hold(
        procs: ProcessGroup, tmp_path: Path, redis_server: RedisServer) -> None:
    fleet = start_fleet(procs, 2, time_scale=0.1)
    x, y = fleet.addresses
    one, two = _start_pair(procs, tmp_path, fleet, redis_server)
    # `poolgate epp` builds the same Gateway: it joins the view with the same flags.
    grpc, epp_admin = free_port(), free_port()
    epp = procs.start(poolgate_command(
        "epp", "-f", str(two.config_dir), "--grpc-port", str(grpc), "--admin-port",
        str(epp_admin), "--host", "127.0.0.1", *_shared(redis_server, "epp")))
    wait_http(f"http://127.0.0.1:{epp_admin}/readyz", proc=epp)
    epp_url = f"http://127.0.0.1:{epp_admin}"
    async with aiohttp.ClientSession() as s:
        held = [asyncio.create_task(_hold(s, one)) for _ in range(HELD)]
        try:
            for admin in (two.admin, epp_url):
                await _until(lambda a=admin: _peer_load_is(s, a, x, HELD),  # type: ignore[misc]
                             f"{HELD} requests of replica 1 in {admin}'s view of {x}")
            mine = await _live_endpoint(s, two.admin, x)
            assert (mine["in_flight"], mine["peer_in_flight"]) == (0, HELD)
            assert await _metric(s, two.admin, "poolgate_shared_load_up") == 1
            # Replica 1 and the picker: an idle peer is counted once its report advanced (its
            # idle exchanges are staleness / 2 apart), so this may take a moment.
            await _until(lambda: _metric_at_least(s, two.admin, "poolgate_shared_load_peers", 2),
                         "both peers counted")

            for _ in range(6):
                assert await _complete(s, two.url) == 200
            # Replica 2 itself had nothing in flight: only the shared view made X look busy.
            assert await _served_by(two, 6) == [y] * 6
            assert not any(t.done() for t in held), "the held streams ended too early"
        finally:
            await _cancel(held)
        # The streams ended: replica 1 publishes that, and replica 2 stops counting them.
        await _until(lambda: _peer_load_is(s, two.admin, x, 0), "replica 1's load gone")


async def _peer_load_is(s: aiohttp.ClientSession, admin: str, address: str, n: int) -> bool:
    return await _peer_load(s, admin, address) == n


def _log_count(gw: RunningGateway, text: str) -> int:
    return gw.proc.output().count(text)


async def test_redis_slow_or_gone_falls_back_to_local_counts_and_comes_back(
        procs: ProcessGroup, tmp_path: Path) -> None:
    redis = start_redis(procs)
    fleet = start_fleet(procs, 2, time_scale=0.1)
    x, y = fleet.addresses
    one, two = _start_pair(procs, tmp_path, fleet, redis)
    unreachable, back = "shared in-flight store", "reachable again"
    async with aiohttp.ClientSession() as s:
        held = [asyncio.create_task(_hold(s, one)) for _ in range(HELD)]
        stopped = False
        try:
            await _until(lambda: _peer_load_is(s, two.admin, x, HELD), "the shared view")

            # Slow: redis-server stopped (SIGSTOP), connections open but never answered.
            os.kill(redis.process.pid, signal.SIGSTOP)
            stopped = True
            await _until(lambda: _metric_at_least(s, two.admin, "poolgate_shared_load_errors_total",
                                                  3, reason="timeout"), "three timed-out exchanges")
            await _until(lambda: _peer_load_is(s, two.admin, x, 0),
                         "the peers' counts dropped once the view is stale")
            assert await _metric(s, two.admin, "poolgate_shared_load_up") == 0
            assert await _metric(s, two.admin, "poolgate_shared_load_age_seconds") > 1.0
            # Requests never wait for the store: each is answered while it hangs. With only
            # local counts X and Y tie, so the picks spread over both again.
            for _ in range(12):
                assert await _complete(s, two.url) == 200
            assert set(await _served_by(two, 12)) == {x, y}
            # One warning for the outage, not one per failed attempt.
            assert _log_count(two, "unreachable (") == 1

            os.kill(redis.process.pid, signal.SIGCONT)
            stopped = False
            await _until(lambda: _peer_load_is(s, two.admin, x, HELD), "the view back")
            assert await _metric(s, two.admin, "poolgate_shared_load_up") == 1
            assert _log_count(two, back) == 1

            # Gone: redis-server stopped, then started again (empty) on the same port.
            redis.process.stop()
            await _until(lambda: _metric_at_least(s, two.admin, "poolgate_shared_load_errors_total",
                                                  1, reason="unavailable"), "a refused exchange")
            await _until(lambda: _peer_load_is(s, two.admin, x, 0), "local counts only")
            assert await _complete(s, two.url) == 200
            assert _log_count(two, "unreachable (") == 2
            start_redis(procs, port=redis.port)
            await _until(lambda: _peer_load_is(s, two.admin, x, HELD),
                         "the view rebuilt after the restart")
            assert _log_count(two, back) == 2
            assert unreachable in two.proc.output()
            assert not any(t.done() for t in held), "the held streams ended too early"
        finally:
            if stopped:
                os.kill(redis.process.pid, signal.SIGCONT)
            await _cancel(held)


async def _metric_at_least(s: aiohttp.ClientSession, admin: str, name: str, n: float,
                           **labels: str) -> bool:
    return await _metric(s, admin, name, **labels) >= n

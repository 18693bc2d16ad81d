"""The global concurrency limit: router processes sharing one real redis-server."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e.redis_fixture import RedisServer, redis_server
from tests.e2e.router_process import metric, start_router
from tests.support.processes import ProcessGroup, free_port

pytestmark = pytest.mark.e2e

__all__ = ["redis_server"]


async def infer_status(session: aiohttp.ClientSession, url: str) -> tuple[int, str | None]:
    async with session.post(f"{url}/infer", json={"prompt": "x"}) as resp:
        await resp.read()
        return resp.status, resp.headers.get("x-poolgate-reason")


async def test_limit_is_shared_by_two_routers(procs: ProcessGroup, redis_server: RedisServer) -> None:
    env = {"KV_ENDPOINTS": redis_server.endpoint, "GLOBAL_MAX_CONCURRENCY": "2",
           "MAX_CONCURRENCY": "5", "OVERFLOW": "reject", "SIMULATED_LATENCY_MS": "800"}
    a = start_router(procs, POD_NAME="router-a", env=env)
    b = start_router(procs, POD_NAME="router-b", env=env)
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(infer_status(s, r.url) for r in (a, b, a, b, a, b)))
        assert sorted(status for status, _ in results) == [200, 200, 429, 429, 429, 429]
        assert {reason for status, reason in results if status == 429} == {"global_limit"}
        peaks = [await metric(s, r, "poolgate_router_requests_in_flight_peak") for r in (a, b)]
        assert sum(peaks) == 2
        # once the first two finished and released, the slots are free again
        assert [status for status, _ in await asyncio.gather(
            infer_status(s, a.url), infer_status(s, b.url))] == [200, 200]
    assert "global limit GLOBAL_MAX_CONCURRENCY=2" in a.process.output()


async def test_queue_mode_waits_for_a_global_slot(procs: ProcessGroup,
                                                  redis_server: RedisServer) -> None:
    env = {"KV_ENDPOINTS": redis_server.endpoint, "GLOBAL_MAX_CONCURRENCY": "1",
           "MAX_CONCURRENCY": "5", "SIMULATED_LATENCY_MS": "300"}
    a = start_router(procs, env=env)
    b = start_router(procs, env=env)
    async with aiohttp.ClientSession() as s:
        started = time.monotonic()
        results = await asyncio.gather(*(infer_status(s, r.url) for r in (a, b, a)))
        elapsed = time.monotonic() - started
    assert [status for status, _ in results] == [200, 200, 200]
    # one at a time across both routers: three 300 ms requests cannot overlap
    assert elapsed >= 0.85


async def test_killed_router_frees_its_slots_after_the_lease(procs: ProcessGroup,
                                                             redis_server: RedisServer) -> None:
    env = {"KV_ENDPOINTS": redis_server.endpoint, "GLOBAL_MAX_CONCURRENCY": "1",
           "OVERFLOW": "reject", "KV_LEASE_MS": "1000"}
    a = start_router(procs, POD_NAME="router-a", SIMULATED_LATENCY_MS="60000", env=env)
    b = start_router(procs, POD_NAME="router-b", SIMULATED_LATENCY_MS="0", env=env)
    async with aiohttp.ClientSession() as s:
        long_request = asyncio.create_task(infer_status(s, a.url))
        deadline = time.monotonic() + 10
        while await metric(s, a, "poolgate_router_kv_leases_held") < 1:
            assert time.monotonic() < deadline, "router A never took its lease"
            await asyncio.sleep(0.02)
        # past the lease time the slot is still held: router A renews the lease of its long request
        await asyncio.sleep(1.5)
        assert await infer_status(s, b.url) == (429, "global_limit")

        a.process.kill()
        killed = time.monotonic()
        with pytest.raises(aiohttp.ClientError):
            await long_request
        status: tuple[int, str | None] = (0, None)
        while time.monotonic() - killed < 10:
            status = await infer_status(s, b.url)
            if status[0] == 200:
                break
            await asyncio.sleep(0.05)
        recovered_after = time.monotonic() - killed
    assert status[0] == 200
    # the slot came back once the 1 s lease expired, not later (generous bound)
    assert recovered_after < 4


@pytest.mark.parametrize(
    ("mode", "expected_status"),
    [pytest.param("open", 200, id="open"), pytest.param("closed", 503, id="closed")],
)
async def test_unreachable_redis(procs: ProcessGroup, mode: str, expected_status: int) -> None:
    router = start_router(procs, KV_ENDPOINTS=f"127.0.0.1:{free_port()}",
                          GLOBAL_MAX_CONCURRENCY="1", KV_FAILURE_MODE=mode,
                          SIMULATED_LATENCY_MS="0")
    async with aiohttp.ClientSession() as s:
        status, reason = await infer_status(s, router.url)
        assert status == expected_status
        assert await metric(s, router, "poolgate_router_kv_failures_total", {"op": "acquire"}) == 1
        if mode == "open":
            assert await metric(s, router, "poolgate_router_kv_fail_open_total") == 1
        else:
            assert reason == "kv_unavailable"
            assert await metric(s, router, "poolgate_router_requests_rejected_total",
                                {"reason": "kv_unavailable"}) == 1
        async with s.get(f"{router.url}/readyz") as r:
            assert (await r.json())["kv"] == "unreachable"
    assert "KV store unreachable (acquire)" in router.process.output()

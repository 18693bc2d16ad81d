"""The Redis lease store (Lua scripts) against a real redis-server."""

from __future__ import annotations

import asyncio

import pytest

from poolgate.state.interfaces import KVUnavailable
from poolgate.state.kv_endpoints import KVEndpoint
from poolgate.state.redis_leases import RedisLeaseStore
from tests.e2e.redis_fixture import RedisServer, redis_server
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

__all__ = ["redis_server"]


async def test_acquire_renew_release_and_expiry(redis_server: RedisServer) -> None:
    store = RedisLeaseStore(KVEndpoint("127.0.0.1", redis_server.port), timeout_s=2)
    try:
        await store.ping()
        assert await store.acquire("k", "a", 2, 300)
        assert await store.acquire("k", "a", 2, 300)  # idempotent for the holder
        assert await store.acquire("k", "b", 2, 300)
        assert not await store.acquire("k", "c", 2, 300)
        assert await store.count("k") == 2
        assert await store.acquire("other", "c", 1, 300)  # keys are independent

        await asyncio.sleep(0.2)
        assert await store.renew("k", ["a", "ghost"], 300) == ["ghost"]
        await asyncio.sleep(0.2)
        # "b" (not renewed) has expired, "a" (renewed) is still live
        assert await store.count("k") == 1
        assert await store.acquire("k", "c", 2, 300)
        assert not await store.acquire("k", "d", 2, 300)

        await store.release("k", "c")
        await store.release("k", "c")
        assert await store.acquire("k", "d", 2, 300)
        assert await store.renew("k", [], 300) == []
    finally:
        await store.aclose()


async def test_unreachable_node_raises_kv_unavailable() -> None:
    store = RedisLeaseStore(KVEndpoint("127.0.0.1", free_port()), timeout_s=0.5)
    try:
        calls = (store.ping, lambda: store.acquire("k", "a", 1, 100), lambda: store.count("k"),
                 lambda: store.renew("k", ["a"], 100), lambda: store.release("k", "a"))
        for call in calls:
            with pytest.raises(KVUnavailable, match=r"redis 127\.0\.0\.1:"):
                await call()
    finally:
        await store.aclose()

"""GlobalLimit: leases, renewal and the KV failure modes, over an in-memory or failing store."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from poolgate.router.config import KVFailureMode
from poolgate.router.global_limit import GlobalLimit, GlobalLimitReached
from poolgate.router.metrics import RouterMetrics
from poolgate.state.interfaces import KVUnavailable
from poolgate.state.leases import MemoryLeaseStore


class DownStore:
    """A lease store whose every call fails, as an unreachable Redis does."""

    async def acquire(self, key: str, lease_id: str, limit: int, lease_ms: int) -> bool:
        raise KVUnavailable("connection refused")

    async def renew(self, key: str, lease_ids: Sequence[str], lease_ms: int) -> list[str]:
        raise KVUnavailable("connection refused")

    async def release(self, key: str, lease_id: str) -> None:
        raise KVUnavailable("connection refused")

    async def count(self, key: str) -> int:
        raise KVUnavailable("connection refused")

    async def ping(self) -> None:
        raise KVUnavailable("connection refused")

    async def aclose(self) -> None:
        return None


def sample(metrics: RouterMetrics, name: str, labels: dict[str, str] | None = None) -> float:
    value = metrics.registry.get_sample_value(name, labels or {})
    return 0.0 if value is None else value


async def test_acquire_until_full_then_release() -> None:
    metrics = RouterMetrics()
    gl = GlobalLimit(MemoryLeaseStore(), "k", 2, 1000, KVFailureMode.OPEN, metrics, "pod")
    a = await gl.acquire(None)
    b = await gl.acquire(None)
    assert a and b and a != b and a.startswith("pod:")
    with pytest.raises(GlobalLimitReached):
        await gl.acquire(None)
    assert sample(metrics, "poolgate_router_kv_leases_held") == 2
    await gl.release(a)
    assert await gl.acquire(None)


async def test_waiting_acquire_gives_up_at_the_deadline() -> None:
    gl = GlobalLimit(MemoryLeaseStore(), "k", 1, 1000, KVFailureMode.OPEN, RouterMetrics(), "pod")
    await gl.acquire(None)
    with pytest.raises(GlobalLimitReached):
        await gl.acquire(asyncio.get_running_loop().time() + 0.12)


async def test_renewal_keeps_leases_alive_and_counts_lost_ones() -> None:
    now = [0.0]
    store = MemoryLeaseStore(clock_ms=lambda: now[0])
    metrics = RouterMetrics()
    gl = GlobalLimit(store, "k", 1, 100, KVFailureMode.OPEN, metrics, "pod")
    lease = await gl.acquire(None)
    now[0] = 90
    await gl.renew_once()
    now[0] = 180
    assert await store.count("k") == 1  # renewed at 90, so alive until 190
    now[0] = 300
    await gl.renew_once()
    assert sample(metrics, "poolgate_router_kv_leases_lost_total") == 1
    assert lease in gl.held


async def test_open_mode_admits_without_a_lease_and_counts_it() -> None:
    metrics = RouterMetrics()
    gl = GlobalLimit(DownStore(), "k", 1, 1000, KVFailureMode.OPEN, metrics, "pod")
    assert await gl.acquire(None) is None
    assert await gl.acquire(None) is None
    assert not gl.reachable
    assert sample(metrics, "poolgate_router_kv_fail_open_total") == 2
    assert sample(metrics, "poolgate_router_kv_failures_total", {"op": "acquire"}) == 2


async def test_closed_mode_refuses() -> None:
    metrics = RouterMetrics()
    gl = GlobalLimit(DownStore(), "k", 1, 1000, KVFailureMode.CLOSED, metrics, "pod")
    with pytest.raises(KVUnavailable):
        await gl.acquire(None)
    assert sample(metrics, "poolgate_router_kv_fail_open_total") == 0


async def test_release_and_renew_failures_are_counted_not_raised() -> None:
    metrics = RouterMetrics()
    gl = GlobalLimit(DownStore(), "k", 1, 1000, KVFailureMode.OPEN, metrics, "pod")
    gl.held.add("pod:x")
    await gl.renew_once()
    await gl.release("pod:x")
    assert sample(metrics, "poolgate_router_kv_failures_total", {"op": "renew"}) == 1
    assert sample(metrics, "poolgate_router_kv_failures_total", {"op": "release"}) == 1
    assert not gl.held

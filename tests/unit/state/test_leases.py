"""LeaseTable: the reference semantics of expiring concurrency leases."""

from __future__ import annotations

from poolgate.state.leases import LeaseTable, MemoryLeaseStore


def test_limit_is_enforced_until_a_lease_expires() -> None:
    t = LeaseTable()
    assert t.acquire("k", "a", 2, 1000, now_ms=0)
    assert t.acquire("k", "b", 2, 1000, now_ms=10)
    assert not t.acquire("k", "c", 2, 1000, now_ms=999)
    # "a" expires at 1000 exactly: a crashed holder frees its slot after the lease
    assert t.acquire("k", "c", 2, 1000, now_ms=1000)
    assert t.count("k", now_ms=1000) == 2


def test_reacquiring_a_held_lease_is_idempotent() -> None:
    t = LeaseTable()
    assert t.acquire("k", "a", 1, 1000, now_ms=0)
    assert t.acquire("k", "a", 1, 1000, now_ms=5)
    assert t.count("k", now_ms=5) == 1


def test_renew_extends_live_leases_and_reports_lost_ones() -> None:
    t = LeaseTable()
    t.acquire("k", "a", 5, 100, now_ms=0)
    t.acquire("k", "b", 5, 100, now_ms=50)
    assert t.renew("k", ["a", "b", "ghost"], 100, now_ms=90) == ["ghost"]
    assert t.count("k", now_ms=180) == 2
    assert t.renew("k", ["a"], 100, now_ms=200) == ["a"]  # expired at 190: renewal comes too late


def test_release_frees_at_once_and_tolerates_unknown_ids() -> None:
    t = LeaseTable()
    t.acquire("k", "a", 1, 1000, now_ms=0)
    t.release("k", "a")
    t.release("k", "a")
    t.release("other", "x")
    assert t.acquire("k", "b", 1, 1000, now_ms=1)


def test_keys_are_independent() -> None:
    t = LeaseTable()
    assert t.acquire("x", "a", 1, 1000, now_ms=0)
    assert t.acquire("y", "a", 1, 1000, now_ms=0)


async def test_memory_store_uses_its_clock() -> None:
    now = [0.0]
    store = MemoryLeaseStore(clock_ms=lambda: now[0])
    assert await store.acquire("k", "a", 1, 100, )
    assert not await store.acquire("k", "b", 1, 100)
    now[0] = 100
    assert await store.acquire("k", "b", 1, 100)
    assert await store.renew("k", ["a", "b"], 100) == ["a"]
    await store.release("k", "b")
    assert await store.count("k") == 0

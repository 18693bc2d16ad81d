"""Expiring concurrency leases in memory: the reference semantics of the Redis store."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence


class LeaseTable:
    """Leases per key, each with an absolute expiry in ms; pure (the caller passes `now_ms`).

    The Redis Lua scripts in `redis_leases.py` implement exactly these steps, atomically.
    """

    def __init__(self) -> None:
        self._leases: dict[str, dict[str, float]] = {}

    def _live(self, key: str, now_ms: float) -> dict[str, float]:
        leases = self._leases.setdefault(key, {})
        for lease_id in [i for i, expiry in leases.items() if expiry <= now_ms]:
            del leases[lease_id]
        return leases

    def acquire(self, key: str, lease_id: str, limit: int, lease_ms: int, now_ms: float) -> bool:
        """Drop expired leases, then add `lease_id` if fewer than `limit` remain."""
        leases = self._live(key, now_ms)
        if lease_id in leases or len(leases) < limit:
            leases[lease_id] = now_ms + lease_ms
            return True
        return False

    def renew(self, key: str, lease_ids: Sequence[str], lease_ms: int, now_ms: float) -> list[str]:
        """Extend the live leases among `lease_ids`; returns those that had expired or vanished."""
        leases = self._live(key, now_ms)
        lost = []
        for lease_id in lease_ids:
            if lease_id in leases:
                leases[lease_id] = now_ms + lease_ms
            else:
                lost.append(lease_id)
        return lost

    def release(self, key: str, lease_id: str) -> None:
        """Drop a lease if present."""
        self._leases.get(key, {}).pop(lease_id, None)

    def count(self, key: str, now_ms: float) -> int:
        """Live leases under `key`."""
        return len(self._live(key, now_ms))


class MemoryLeaseStore:
    """A `LeaseStore` for a single process (no sharing): a `LeaseTable` on a monotonic clock."""

    def __init__(self, clock_ms: Callable[[], float] | None = None) -> None:
        self._table = LeaseTable()
        self._clock_ms = clock_ms or (lambda: time.monotonic() * 1000)

    async def acquire(self, key: str, lease_id: str, limit: int, lease_ms: int) -> bool:
        return self._table.acquire(key, lease_id, limit, lease_ms, self._clock_ms())

    async def renew(self, key: str, lease_ids: Sequence[str], lease_ms: int) -> list[str]:
        return self._table.renew(key, lease_ids, lease_ms, self._clock_ms())

    async def release(self, key: str, lease_id: str) -> None:
        self._table.release(key, lease_id)

    async def count(self, key: str) -> int:
        return self._table.count(key, self._clock_ms())

    async def ping(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

"""What shared state looks like to its users: a store of expiring concurrency leases."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class KVUnavailable(Exception):
    """The shared store could not be reached or did not answer in time."""


class KVTimeout(KVUnavailable):
    """The shared store did not answer in time (it may be overloaded or stopped)."""


class LeaseStore(Protocol):
    """A counting semaphore per key whose slots are leases that expire unless renewed.

    A holder that dies without releasing loses its slot when its lease expires, so a crashed
    replica cannot leak capacity. Every method raises `KVUnavailable` when the store is down.
    """

    async def acquire(self, key: str, lease_id: str, limit: int, lease_ms: int) -> bool:
        """Add `lease_id` under `key` if fewer than `limit` live leases exist; True if added."""
        ...

    async def renew(self, key: str, lease_ids: Sequence[str], lease_ms: int) -> list[str]:
        """Push the expiry of live leases `lease_ms` ahead; returns the ids that were already gone."""
        ...

    async def release(self, key: str, lease_id: str) -> None:
        """Drop a lease (no error if it already expired)."""
        ...

    async def count(self, key: str) -> int:
        """How many live leases `key` holds now."""
        ...

    async def ping(self) -> None:
        """Check the store answers."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...

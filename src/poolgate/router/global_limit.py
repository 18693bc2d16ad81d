"""The concurrency limit shared by every router replica of a model, kept as leases in Redis."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from poolgate.router.config import KVFailureMode
from poolgate.router.metrics import RouterMetrics
from poolgate.state.interfaces import KVUnavailable, LeaseStore

log = logging.getLogger("poolgate.router")

# How often a queued request asks the store again for a global slot.
GLOBAL_POLL_S = 0.05


class GlobalLimitReached(Exception):
    """Every global slot is leased (and the request may not wait, or waited too long)."""


class GlobalLimit:
    """Acquire, renew and release one lease per admitted request.

    Leases expire `lease_ms` after their last renewal, so the slots of a replica that crashes
    come back by themselves; a live replica renews all its leases every `lease_ms / 3` in one
    script call. When the store is unreachable, `failure_mode` decides: OPEN admits the request
    without a lease (the local MAX_CONCURRENCY still holds), CLOSED raises `KVUnavailable`.
    """

    def __init__(self, store: LeaseStore, key: str, limit: int, lease_ms: int,
                 failure_mode: KVFailureMode, metrics: RouterMetrics, holder: str) -> None:
        self.store = store
        self.key = key
        self.limit = limit
        self.lease_ms = lease_ms
        self.failure_mode = failure_mode
        self.metrics = metrics
        self.holder = holder
        self.held: set[str] = set()
        self.reachable = True

    async def acquire(self, loop_deadline: float | None) -> str | None:
        """A lease id, or None when admitted without a lease (store down, fail-open).

        Polls until `loop_deadline` (event-loop time); None means "do not wait". Raises
        `GlobalLimitReached` when no slot came in time, `KVUnavailable` in closed mode.
        """
        lease_id = f"{self.holder}:{uuid.uuid4().hex}"
        loop = asyncio.get_running_loop()
        while True:
            try:
                acquired = await self.store.acquire(self.key, lease_id, self.limit, self.lease_ms)
            except KVUnavailable as exc:
                self._failed("acquire", exc)
                if self.failure_mode is KVFailureMode.CLOSED:
                    raise
                self.metrics.kv_fail_open.inc()
                return None
            self._succeeded()
            if acquired:
                self.held.add(lease_id)
                self.metrics.kv_leases_held.set(len(self.held))
                return lease_id
            if loop_deadline is None or loop.time() + GLOBAL_POLL_S > loop_deadline:
                raise GlobalLimitReached(
                    f"all {self.limit} global slots for {self.key} are in use")
            await asyncio.sleep(GLOBAL_POLL_S)

    async def release(self, lease_id: str) -> None:
        """Give the lease back; if the store is down the lease simply expires."""
        self.held.discard(lease_id)
        self.metrics.kv_leases_held.set(len(self.held))
        try:
            await self.store.release(self.key, lease_id)
        except KVUnavailable as exc:
            self._failed("release", exc)
        else:
            self._succeeded()

    async def renew_once(self) -> None:
        """Extend every held lease; count the ones that had already expired."""
        if not self.held:
            return
        try:
            lost = await self.store.renew(self.key, sorted(self.held), self.lease_ms)
        except KVUnavailable as exc:
            self._failed("renew", exc)
            return
        self._succeeded()
        if lost:
            # The request keeps running (it cannot be undone); until it ends, the global count
            # is short by these leases. Only an outage longer than the lease can cause this.
            self.metrics.kv_leases_lost.inc(len(lost))
            log.warning("%d global lease(s) on %s expired before renewal", len(lost), self.key)

    async def renew_forever(self) -> None:
        """Background task: renew held leases every third of the lease time."""
        while True:
            await asyncio.sleep(self.lease_ms / 3000)
            await self.renew_once()

    async def aclose(self) -> None:
        """Release what is still held (best effort) and close the store."""
        for lease_id in list(self.held):
            await self.release(lease_id)
        with contextlib.suppress(KVUnavailable):
            await self.store.aclose()

    def _failed(self, op: str, exc: KVUnavailable) -> None:
        self.metrics.kv_failures.labels(op).inc()
        if self.reachable:
            # Warn on the transition only, so an outage does not flood the log.
            log.warning("KV store unreachable (%s): %s; failure mode %s", op, exc,
                        self.failure_mode.value)
        self.reachable = False

    def _succeeded(self) -> None:
        if not self.reachable:
            log.info("KV store reachable again")
        self.reachable = True

"""The background task that keeps a replica's shared in-flight view current.

Every `interval` it publishes this replica's counts and reads the others' in one exchange with
the store, then hands the merged peer totals to the gateway (`apply`). While the whole fleet is
idle (nothing in flight here or elsewhere, nothing changed) it exchanges only every
`idle_interval`, so idle replicas cost the store and themselves little. Requests never wait for
it: the picker reads whatever totals were last applied. When the store is slow or gone the
exchange fails after `timeout`; the last view is kept until it is `staleness` old, then only
local counts are used; the task retries with a doubling back-off (at most `MAX_BACKOFF`), logs
one line when the store goes away and one when it is back, and keeps the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from poolgate.state.interfaces import KVTimeout, KVUnavailable
from poolgate.state.shared_load import (
    MAX_BACKOFF,
    Counts,
    LinkState,
    PeerView,
    SharedLoadSettings,
    encode_report,
)

log = logging.getLogger("poolgate.shared_load")


class LoadBoard(Protocol):
    """The store's side of the exchange. Every method raises `KVUnavailable` when the store
    does not answer."""

    async def exchange(self, replica_id: str, report: bytes, forget: Sequence[str],
                       ttl_ms: int) -> dict[str, bytes]:
        """Write `report` under `replica_id`, delete the fields `forget`, keep the table at
        least `ttl_ms` more, and return every field (replica id -> report) afterwards."""
        ...

    async def withdraw(self, replica_id: str) -> None:
        """Delete this replica's field (a clean stop: peers drop it at their next exchange)."""
        ...

    async def aclose(self) -> None:
        """Close connections."""
        ...


class SharedLoadMetrics:
    """`poolgate_shared_load_*` on the gateway's registry (exported only when the shared view
    is configured)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge("poolgate_shared_load_up",
                        "1 when the last exchange with the shared in-flight store succeeded, "
                        "0 when it failed (then only local counts are used once the view is "
                        "older than the staleness bound).", registry=registry)
        self.errors = Counter("poolgate_shared_load_errors",
                              "Failed exchanges with the shared in-flight store, by reason.",
                              ["reason"], registry=registry)
        self.age = Gauge("poolgate_shared_load_age_seconds",
                         "Seconds since the last successful exchange (-1 before the first).",
                         registry=registry)
        self.peers = Gauge("poolgate_shared_load_peers",
                           "Other gateway replicas whose counts are added to this one's.",
                           registry=registry)
        self.up.set(0)
        self.age.set(-1)


class SharedLoadSync:
    """Publishes `own_counts()` and applies the peers' totals through `apply`, until closed."""

    def __init__(self, settings: SharedLoadSettings, board: LoadBoard,
                 own_counts: Callable[[], Counts], apply: Callable[[Counts], None],
                 metrics: SharedLoadMetrics | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.board = board
        self.own_counts = own_counts
        self.apply = apply
        self.metrics = metrics
        self.clock = clock
        self.view = PeerView(settings.replica_id, settings.staleness, settings.forget_after)
        self.link = LinkState()
        self._seq = 0
        self._applied: Counts = {}
        self._published: Counts | None = None  # the counts of the last successful exchange
        self._exchanged_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        if metrics is not None:
            metrics.age.set_function(self._age)

    def _age(self) -> float:
        age = self.view.age(self.clock())
        return -1.0 if age is None else age

    def start(self) -> None:
        """Run `tick` every interval (or back-off) in a background task."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(),
                                                                name="poolgate-shared-load")

    async def _run(self) -> None:
        while True:
            try:
                delay = await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug must not leave the last peers' counts applied for ever: drop them,
                # say so, and keep trying at the longest back-off.
                log.exception("shared in-flight view: exchange failed unexpectedly; using this "
                              "replica's own counts until the next successful exchange")
                self.apply({})
                self._applied = {}
                delay = MAX_BACKOFF
            await asyncio.sleep(delay)

    async def tick(self) -> float:
        """One exchange; returns the seconds to wait before the next one."""
        s = self.settings
        own = dict(self.own_counts())
        if (self.link.up and not own and self._published == own
                and not self.view.anything_in_flight() and self._exchanged_at is not None
                and self.clock() - self._exchanged_at < s.idle_interval):
            return s.interval  # idle everywhere: nothing to tell, nothing to learn yet
        self._seq += 1
        report = encode_report(self._seq, own)
        forget = self.view.forgotten(self.clock())
        try:
            async with asyncio.timeout(s.timeout):
                published = await self.board.exchange(s.replica_id, report, forget,
                                                       int(s.forget_after * 1000))
        except (KVUnavailable, TimeoutError) as exc:
            self._failed(exc)
        else:
            self._exchanged_at = self.clock()
            self._published = own
            self.view.update(published, self._exchanged_at)
            self._succeeded()
        now = self.clock()
        totals = self.view.totals(now)
        # Every tick, not only on a change: an endpoint the store learnt since (first scraped)
        # gets its peers' counts too. O(endpoints) every interval, off the request path.
        self.apply(totals)
        self._applied = totals
        if self.metrics is not None:
            self.metrics.peers.set(len(self.view.live(now)))
        delay = s.backoff(self.link.failures)
        age = self.view.age(now)
        if self._applied and age is not None:
            # Wake when the view goes stale, to drop the peers' counts then and not later.
            delay = min(delay, max(0.0, s.staleness - age) + 0.001)
        return delay

    def _failed(self, exc: Exception) -> None:
        reason = "timeout" if isinstance(exc, (TimeoutError, KVTimeout)) else "unavailable"
        if self.metrics is not None:
            self.metrics.errors.labels(reason).inc()
            self.metrics.up.set(0)
        if self.link.failed():
            log.warning("shared in-flight store %s unreachable (%s): using this replica's own "
                        "counts once the view is %gs old; retrying with back-off",
                        self.settings.nodes, exc or "timed out", self.settings.staleness)

    def _succeeded(self) -> None:
        was = self.link.up
        if self.metrics is not None:
            self.metrics.up.set(1)
        if self.link.succeeded():
            if was is None:
                log.info("shared in-flight view: replica %s exchanging counts every %gs",
                         self.settings.replica_id, self.settings.interval)
            else:
                log.info("shared in-flight store reachable again")

    async def close(self) -> None:
        """Stop the task, withdraw this replica's counts (best effort) and close the board."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.link.up:
            with contextlib.suppress(KVUnavailable, TimeoutError):
                async with asyncio.timeout(self.settings.timeout):
                    await self.board.withdraw(self.settings.replica_id)
        with contextlib.suppress(KVUnavailable, TimeoutError, OSError):
            await self.board.aclose()

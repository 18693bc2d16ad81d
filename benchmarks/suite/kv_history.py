"""What the replicas' prefix caches did during a run, from their own KV-cache events.

The suite subscribes to every replica's KV events itself (as a second subscriber next to the
gateway's, when it has one), so every router is judged on the same record. `CacheHistory` is
the pure part: per replica, which prompt prefixes it has ever stored and which it still holds.
A prompt's *root* is its first block (a `BlockStored` run with no parent starts at one); the
simulator frees a finished request's blocks tail first, so a root is the last block of its
prefix to go, and a root stored again is a prefix that was evicted and had to be prefilled
again.

For a router that only knows what it sent (the approximate index), every root stored again on
a replica that the router alone feeds is a pick made while its index still believed the
replica held the prefix: it had sent that prefix there before, and an index that does not
forget (see the section's notes) never learns of the eviction. That makes
`roots_stored_again` a lower bound of the approximate index's wrong beliefs among its picks (a
lower bound: several requests that reach a replica in the same engine step store the root once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import zmq
import zmq.asyncio

from poolgate.core.kv_events import (
    AllBlocksCleared,
    BlockHash,
    BlockRemoved,
    BlockStored,
    KVEvent,
    KVEventDecodeError,
    decode_batch,
)


@dataclass(frozen=True, slots=True)
class CacheCounts:
    """Totals of a `CacheHistory` at one moment (subtract two for a window)."""

    blocks_stored: int = 0
    blocks_stored_again: int = 0
    blocks_removed: int = 0
    roots_stored: int = 0
    roots_stored_again: int = 0
    batches: int = 0
    gaps: int = 0

    def __sub__(self, other: CacheCounts) -> CacheCounts:
        return CacheCounts(*(a - b for a, b in zip(self.as_tuple(), other.as_tuple(), strict=True)))

    def as_tuple(self) -> tuple[int, ...]:
        return (self.blocks_stored, self.blocks_stored_again, self.blocks_removed,
                self.roots_stored, self.roots_stored_again, self.batches, self.gaps)


@dataclass
class _Replica:
    ever: set[BlockHash] = field(default_factory=set)
    held: set[BlockHash] = field(default_factory=set)
    roots_ever: set[BlockHash] = field(default_factory=set)
    next_seq: int | None = None


class CacheHistory:
    """Per replica, the blocks and prompt roots ever stored and held, from KV events."""

    def __init__(self) -> None:
        self._replicas: dict[str, _Replica] = {}
        self._counts = CacheCounts()

    def counts(self) -> CacheCounts:
        return self._counts

    def prefixes_per_replica(self) -> dict[str, int]:
        """Per replica, the distinct prompt roots it ever stored: every prefix it was ever sent
        (the first request of a prefix on a replica always stores its root)."""
        return {name: len(r.roots_ever) for name, r in self._replicas.items()}

    def held_roots(self, replica: str) -> int:
        """Prompt roots `replica` holds now."""
        r = self._replicas.get(replica)
        return 0 if r is None else len(r.roots_ever & r.held)

    def batch(self, replica: str, seq: int, events: Sequence[KVEvent]) -> None:
        """Apply one published batch (`seq` is its sequence number: a jump is a gap)."""
        r = self._replicas.setdefault(replica, _Replica())
        gaps = 0 if r.next_seq is None or seq == r.next_seq else 1
        r.next_seq = seq + 1
        c = self._counts
        stored = again = removed = roots = roots_again = 0
        for event in events:
            if isinstance(event, BlockStored):
                if event.parent_block_hash is None and event.block_hashes:
                    root = event.block_hashes[0]
                    roots += 1
                    if root in r.roots_ever:
                        roots_again += 1
                    r.roots_ever.add(root)
                for h in event.block_hashes:
                    stored += 1
                    if h in r.ever:
                        again += 1
                    r.ever.add(h)
                    r.held.add(h)
            elif isinstance(event, BlockRemoved):
                for h in event.block_hashes:
                    removed += 1
                    r.held.discard(h)
            elif isinstance(event, AllBlocksCleared):
                removed += len(r.held)
                r.held.clear()
        self._counts = CacheCounts(
            c.blocks_stored + stored, c.blocks_stored_again + again, c.blocks_removed + removed,
            c.roots_stored + roots, c.roots_stored_again + roots_again, c.batches + 1,
            c.gaps + gaps)


class CacheObserver:
    """A SUB socket per replica feeding one `CacheHistory` (start it before any request)."""

    def __init__(self, publishers: dict[str, str], topic: str = "") -> None:
        self.history = CacheHistory()
        self.decode_errors = 0
        self._publishers = publishers
        self._topic = topic
        self._ctx: zmq.asyncio.Context | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> CacheObserver:
        self._ctx = zmq.asyncio.Context()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._follow(replica, url))
                       for replica, url in self._publishers.items()]
        # A SUB socket receives only once its subscription reached the publisher: give the
        # connections a moment (nothing is published before the first request anyway).
        await asyncio.sleep(0.5)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    async def settle(self, quiet: float = 0.3, timeout: float = 5.0) -> None:
        """Wait until no batch arrived for `quiet` seconds (the events of the last steps)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        last = self.history.counts().batches
        while loop.time() < deadline:
            await asyncio.sleep(quiet)
            now = self.history.counts().batches
            if now == last:
                return
            last = now

    async def _follow(self, replica: str, url: str) -> None:
        assert self._ctx is not None
        sock = self._ctx.socket(zmq.SUB)
        try:
            sock.setsockopt(zmq.SUBSCRIBE, self._topic.encode())
            sock.connect(url)
            while True:
                frames = await sock.recv_multipart()
                if len(frames) != 3 or len(frames[1]) != 8:
                    self.decode_errors += 1
                    continue
                try:
                    batch = decode_batch(frames[2])
                except KVEventDecodeError:
                    self.decode_errors += 1
                    continue
                self.history.batch(replica, int.from_bytes(frames[1], "big"), batch.events)
        finally:
            sock.close(linger=0)


def publishers(replicas: Iterable[str], first_port: int) -> dict[str, str]:
    """Replica `host:port` -> its KV-event publisher, replica i on `first_port + i` (the
    simulator's rule for `--kv-events-config`)."""
    out = {}
    for i, replica in enumerate(replicas):
        host = replica.rpartition(":")[0]
        out[replica] = f"tcp://{host}:{first_port + i}"
    return out

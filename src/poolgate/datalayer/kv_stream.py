"""One model server's KV-event stream, in order: sequence tracking, replay, restarts, trust.

Plain data over a `KVBlockIndex`: the subscriber (`kv_events.py`) hands it each live batch and,
when batches are missing, what the server's replay socket returned; this class decides what to
apply, what to skip, when to clear and when the endpoint's entries may be used.

- In order (sequence = expected): apply.
- Missing batches (sequence > expected): the caller asks the replay socket from `expected` and
  gives the answer to `replayed`. Replayed batches are applied in order; if they reach the live
  batch, nothing was lost. Otherwise (no replay socket, no answer, or the server's buffer no
  longer holds them) the endpoint's entries are cleared and distrusted until the stream has
  been consistent for `hold` seconds: the scorer uses its approximate index meanwhile.
- Sequence back below what was applied (and not a replayed batch seen again): the publisher
  restarted (a new server process, an empty cache). Clear, and start over as for a new stream.
- The first batch seen: sequence 0 is the whole history (trusted at once); a later one means the
  gateway joined late, so it replays from 0: if the server still holds every batch, trusted at
  once, else trusted after `hold` (what came before is unknown).
- The connection to the publisher broke (`disconnected`): forget everything; the next batch is a
  first batch again (the server behind the address may be a new process).
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from poolgate.core.kv_events import BlockRemoved, BlockStored, KVEventDecodeError, decode_batch
from poolgate.datalayer.kv_index import KVBlockIndex


class StreamState(enum.Enum):
    """Whether an endpoint's entries are used: not yet, yes, or not until a hold ends."""

    WAITING = "waiting"
    CONSISTENT = "consistent"
    DEGRADED = "degraded"


@dataclass(slots=True)
class StreamStats:
    """Counters of one stream (plain numbers, rendered as metrics when /metrics is read)."""

    batches: int = 0
    stored: int = 0
    removed: int = 0
    cleared: int = 0
    gaps: int = 0
    restarts: int = 0
    replays_ok: int = 0
    replays_failed: int = 0
    blocks_dropped: int = 0
    decode_errors: int = 0
    disconnects: int = 0


class StreamTracker:
    """The ordered event stream of the endpoint `address`, applied to `index`."""

    def __init__(self, address: str, index: KVBlockIndex, hold: float) -> None:
        self.address = address
        self.index = index
        self.hold = hold
        self.stats = StreamStats()
        self.expected: int | None = None  # next sequence number to apply; None: none seen
        self._replayed_through: int | None = None
        self._pending: tuple[int, bytes] | None = None
        self._late_join = False
        self._usable_from: float | None = None

    def __repr__(self) -> str:
        return (f"<StreamTracker {self.address} expected={self.expected} "
                f"usable_from={self._usable_from}>")

    def state(self, now: float) -> StreamState:
        """The endpoint's state at `now`."""
        if self._usable_from is None:
            return StreamState.WAITING
        return StreamState.CONSISTENT if self._usable_from <= now else StreamState.DEGRADED

    def live(self, seq: int, payload: bytes, now: float) -> int | None:
        """A batch from the PUB socket. Returns the sequence to ask the replay socket from when
        batches are missing (then call `replayed` with the answer), else None."""
        self.stats.batches += 1
        expected = self.expected
        if expected is not None and seq < expected:
            replayed = self._replayed_through
            if replayed is not None and seq <= replayed:
                return None  # already applied from the replay
            self.stats.restarts += 1
            self.index.clear(self.address)
            self.expected = expected = None
            self._replayed_through = None
        if expected is None:
            if seq == 0:
                if self._apply(seq, payload, now):
                    self._trust(now)
                return None
            self._pending = (seq, payload)
            self._late_join = True
            return 0
        if seq == expected:
            self._apply(seq, payload, now)
            self._replayed_through = None
            return None
        self.stats.gaps += 1
        self._pending = (seq, payload)
        self._late_join = False
        return expected

    def disconnected(self) -> None:
        """The connection to the publisher broke. It may come back as a new server process,
        whose sequence says nothing next to the old one's (a restart is not always seen as a
        sequence going back: the new process's first batches can be missed while reconnecting).
        So everything is forgotten and untrusted; the next batch is a first one (replayed
        from 0)."""
        self.stats.disconnects += 1
        self.index.clear(self.address)
        self.index.distrust(self.address)
        self.expected = None
        self._pending = None
        self._replayed_through = None
        self._usable_from = None

    def replayed(self, batches: Sequence[tuple[int, bytes]] | None, now: float) -> None:
        """What the replay socket answered for the last `live` that asked (None: no replay
        socket, or no complete answer in time); then the live batch that was held back."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        late = self._late_join
        errors = self.stats.decode_errors
        # A late join takes whatever history the server still holds; complete if from 0.
        complete = not late or (batches is not None and len(batches) > 0 and batches[0][0] == 0)
        if late:
            self.expected = batches[0][0] if batches else pending[0]
        self._apply_in_order(batches or (), now)
        seq, payload = pending
        expected = self.expected
        assert expected is not None
        covered = seq <= expected
        if batches is not None:
            self._count_replay(covered)
        if not covered and not late:
            # Lost for good: what the index holds may have been removed since.
            self.index.clear(self.address)
            complete = False
        self._replayed_through = expected - 1 if covered else None
        if seq >= expected:
            if not covered:
                self.expected = seq
            self._apply(seq, payload, now)
            self._replayed_through = None
        if self.stats.decode_errors != errors:
            return  # `_apply` has degraded the endpoint already
        if complete and covered:
            if late:
                self._trust(now)
        else:
            self._degrade(now)

    def _apply_in_order(self, batches: Sequence[tuple[int, bytes]], now: float) -> None:
        """Apply replayed batches from `expected` on, up to the first one missing."""
        for seq, payload in batches:
            expected = self.expected
            assert expected is not None
            if seq < expected:
                continue
            if seq > expected:
                return  # the server no longer holds the batches in between
            self._apply(seq, payload, now)

    def _count_replay(self, covered: bool) -> None:
        if covered:
            self.stats.replays_ok += 1
        else:
            self.stats.replays_failed += 1

    def _apply(self, seq: int, payload: bytes, now: float) -> bool:
        """Apply one batch; False when it could not be decoded (the endpoint is degraded)."""
        self.expected = seq + 1
        try:
            batch = decode_batch(payload)
        except KVEventDecodeError:
            # Its events are unknown, and a replay would send the same bytes: as if lost.
            self.stats.decode_errors += 1
            self.index.clear(self.address)
            self._degrade(now)
            return False
        stats = self.stats
        for event in batch.events:
            if isinstance(event, BlockStored):
                stats.stored += 1
            elif isinstance(event, BlockRemoved):
                stats.removed += 1
            else:
                stats.cleared += 1
        stats.blocks_dropped += self.index.apply(self.address, batch.events)
        return True

    def _trust(self, now: float) -> None:
        """The whole history is applied: usable now (a hold that runs is cut short)."""
        self._usable_from = now
        self.index.trust_from(self.address, now)

    def _degrade(self, now: float) -> None:
        """Entries were lost: usable again once consistent for `hold` seconds."""
        until = now + self.hold
        self._usable_from = until
        self.index.trust_from(self.address, until)

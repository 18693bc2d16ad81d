"""One server's KV-event stream as plain data: order, gaps and replay, restarts, trust."""

from __future__ import annotations

from poolgate.core.kv_events import AllBlocksCleared, BlockRemoved, BlockStored, encode_batch
from poolgate.datalayer.kv_index import KVBlockIndex, block_keys, root_key
from poolgate.datalayer.kv_stream import StreamState, StreamTracker

A = "10.0.0.1:8000"
BS = 2
HOLD = 5.0


def _stored(first: int, n: int = 1, parent: int | None = None) -> bytes:
    """Blocks first..first+n-1 of one long prompt (engine hash = block number + 1000)."""
    tokens = list(range(first * BS, (first + n) * BS))
    return encode_batch(0.0, [BlockStored([1000 + i for i in range(first, first + n)],
                                          parent, tokens, BS)])


def _chain(n: int) -> list[int]:
    return block_keys(list(range(n * BS)), BS, root_key(None))


def _held(index: KVBlockIndex, n: int = 6) -> int:
    return index.match_lengths(_chain(n), {A}).get(A, 0)


def _tracker() -> tuple[StreamTracker, KVBlockIndex]:
    index = KVBlockIndex()
    return StreamTracker(A, index, HOLD), index


def _block(i: int) -> bytes:
    return _stored(i, parent=None if i == 0 else 999 + i)


def test_in_order_from_zero_is_trusted_at_once() -> None:
    t, index = _tracker()
    assert t.state(0.0) is StreamState.WAITING and not index.usable(A, 0.0)
    for seq in range(3):
        assert t.live(seq, _block(seq), now=1.0) is None
    assert _held(index) == 3
    assert t.state(1.0) is StreamState.CONSISTENT and index.usable(A, 1.0)
    assert (t.stats.batches, t.stats.stored, t.stats.gaps) == (3, 3, 0)


def test_a_gap_replayed_loses_nothing() -> None:
    t, index = _tracker()
    t.live(0, _block(0), 1.0)
    assert t.live(3, _block(3), 2.0) == 1  # batches 1 and 2 are missing
    t.replayed([(1, _block(1)), (2, _block(2)), (3, _block(3))], 2.0)
    assert _held(index) == 4
    assert t.state(2.0) is StreamState.CONSISTENT
    assert (t.stats.gaps, t.stats.replays_ok, t.stats.replays_failed) == (1, 1, 0)
    # Batch 3 came from the replay: seen again live, it is skipped; then the stream goes on.
    assert t.live(3, _block(3), 2.0) is None
    assert t.live(4, _block(4), 2.0) is None
    assert _held(index) == 5 and t.stats.restarts == 0


def test_a_replay_that_no_longer_covers_the_gap_clears_and_holds() -> None:
    t, index = _tracker()
    t.live(0, _block(0), 1.0)
    t.live(1, _block(1), 1.0)
    assert t.live(5, _stored(5, parent=1004), 2.0) == 2
    t.replayed([(4, _stored(4, parent=1003))], 2.0)  # the buffer starts after 2
    assert t.stats.replays_failed == 1
    assert _held(index) == 0 and index.blocks(A) == 0  # cleared; 5's parent is unknown
    assert t.state(2.0) is StreamState.DEGRADED and not index.usable(A, 2.0 + HOLD - 0.1)
    assert t.stats.blocks_dropped == 1
    # The stream goes on consistently; after the hold the entries are used again.
    t.live(6, _block(0), 3.0)
    assert t.state(2.0 + HOLD) is StreamState.CONSISTENT and index.usable(A, 2.0 + HOLD)
    assert _held(index) == 1


def test_without_a_replay_socket_a_gap_clears_and_holds() -> None:
    t, index = _tracker()
    t.live(0, _block(0), 1.0)
    assert t.live(2, _block(2), 1.0) == 1
    t.replayed(None, 1.0)
    assert (t.stats.replays_ok, t.stats.replays_failed) == (0, 0)
    assert index.blocks(A) == 0 and t.state(1.0) is StreamState.DEGRADED
    assert t.expected == 3


def test_another_gap_during_the_hold_restarts_it() -> None:
    t, index = _tracker()
    t.live(0, _block(0), 0.0)
    t.live(2, _block(1), 1.0)
    t.replayed(None, 1.0)
    t.live(5, _block(0), 4.0)
    t.replayed(None, 4.0)
    assert not index.usable(A, 1.0 + HOLD) and index.usable(A, 4.0 + HOLD)


def test_a_restarted_publisher_is_cleared_and_trusted_from_its_zero() -> None:
    t, index = _tracker()
    for seq in range(4):
        t.live(seq, _block(seq), 1.0)
    assert _held(index) == 4
    assert t.live(0, _block(0), 2.0) is None  # a new server process: sequence back to 0
    assert t.stats.restarts == 1
    assert _held(index) == 1 and t.state(2.0) is StreamState.CONSISTENT


def test_a_restart_seen_late_replays_from_zero() -> None:
    t, index = _tracker()
    for seq in range(6):
        t.live(seq, _block(seq), 1.0)
    assert t.live(2, _block(2), 2.0) == 0  # restarted, and 0..1 of the new stream were missed
    assert index.blocks(A) == 0
    t.replayed([(0, _block(0)), (1, _block(1)), (2, _block(2))], 2.0)
    assert _held(index) == 3 and t.state(2.0) is StreamState.CONSISTENT


def test_a_late_join_with_the_whole_history_replayed_is_trusted() -> None:
    t, index = _tracker()
    assert t.live(3, _block(3), 1.0) == 0
    t.replayed([(i, _block(i)) for i in range(4)], 1.0)
    assert _held(index) == 4 and t.state(1.0) is StreamState.CONSISTENT
    assert t.stats.gaps == 0 and t.stats.replays_ok == 1


def test_a_late_join_without_the_history_waits_a_hold() -> None:
    t, index = _tracker()
    assert t.live(3, _block(0), 1.0) == 0
    t.replayed(None, 1.0)
    assert index.blocks(A) == 1  # what came is applied, but older blocks are unknown
    assert t.state(1.0) is StreamState.DEGRADED and t.state(1.0 + HOLD) is StreamState.CONSISTENT
    t2, index2 = _tracker()
    t2.live(7, _block(2), 1.0)
    t2.replayed([(5, _block(0)), (6, _block(1)), (7, _block(2))], 1.0)  # buffer from 5 only
    assert t2.state(1.0) is StreamState.DEGRADED and index2.blocks(A) == 3


def test_an_undecodable_batch_counts_as_lost() -> None:
    t, index = _tracker()
    t.live(0, _block(0), 1.0)
    t.live(1, b"\xc1 not msgpack", 1.0)
    assert t.stats.decode_errors == 1
    assert index.blocks(A) == 0 and t.state(1.0) is StreamState.DEGRADED
    assert t.live(2, _block(0), 1.0) is None and t.expected == 3


def test_event_kinds_are_counted() -> None:
    t, index = _tracker()
    t.live(0, encode_batch(0.0, [BlockStored([1], None, [1, 2], BS), BlockRemoved([1]),
                                 AllBlocksCleared()]), 1.0)
    assert (t.stats.stored, t.stats.removed, t.stats.cleared) == (1, 1, 1)
    assert index.blocks(A) == 0


def test_a_disconnect_forgets_everything_and_starts_over() -> None:
    t, index = _tracker()
    for seq in range(4):
        t.live(seq, _block(seq), 1.0)
    t.disconnected()
    assert t.stats.disconnects == 1 and index.blocks(A) == 0
    assert t.state(1.0) is StreamState.WAITING and not index.usable(A, 1.0)
    # A new server process whose first batches were missed while reconnecting: its sequence
    # (2) is below what the old one reached (4), but it is a first batch, replayed from 0.
    assert t.live(2, _block(2), 2.0) == 0
    t.replayed([(0, _block(0)), (1, _block(1)), (2, _block(2))], 2.0)
    assert _held(index) == 3 and t.state(2.0) is StreamState.CONSISTENT
    assert t.stats.restarts == 0

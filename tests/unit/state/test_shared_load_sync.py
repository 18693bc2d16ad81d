"""SharedLoadSync over an in-memory table: what each replica applies, when the store fails, what
it logs and the metrics it keeps (no sockets; the Redis board is tested end to end)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from poolgate.state.interfaces import KVUnavailable
from poolgate.state.kv_endpoints import KVEndpoint
from poolgate.state.shared_load import Counts, SharedLoadSettings
from poolgate.state.shared_load_sync import SharedLoadMetrics, SharedLoadSync


class TableBoard:
    """The Redis hash's semantics in a dict; `down` fails exchanges, `slow` never answers."""

    def __init__(self) -> None:
        self.table: dict[str, bytes] = {}
        self.down = False
        self.slow = False
        self.exchanges = 0
        self.closed = False

    async def exchange(self, replica_id: str, report: bytes, forget: Sequence[str],
                       ttl_ms: int) -> dict[str, bytes]:
        self.exchanges += 1
        if self.slow:
            await asyncio.sleep(3600)
        if self.down:
            raise KVUnavailable("redis 127.0.0.1:1: connection refused")
        self.table[replica_id] = report
        for replica in forget:
            self.table.pop(replica, None)
        return dict(self.table)

    async def withdraw(self, replica_id: str) -> None:
        if self.down:
            raise KVUnavailable("down")
        self.table.pop(replica_id, None)

    async def aclose(self) -> None:
        self.closed = True


class Replica:
    """One replica's side: its own counts and what it was last told about the others."""

    def __init__(self, name: str, board: TableBoard, clock: list[float],
                 registry: CollectorRegistry | None = None) -> None:
        self.own: dict[str, tuple[int, int]] = {}
        self.applied: list[Counts] = []
        self.registry = registry or CollectorRegistry()
        settings = SharedLoadSettings((KVEndpoint("127.0.0.1", 1),), name, interval=0.05,
                                      staleness=1.0)
        self.sync = SharedLoadSync(settings, board, lambda: self.own, self.applied.append,
                                   SharedLoadMetrics(self.registry), clock=lambda: clock[0])

    @property
    def peers(self) -> Counts:
        return self.applied[-1] if self.applied else {}

    def metric(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)


async def _round(clock: list[float], *replicas: Replica, step: float = 0.05) -> list[float]:
    delays = [await r.sync.tick() for r in replicas]
    clock[0] += step
    return delays


async def test_replicas_see_each_others_counts_after_two_exchanges() -> None:
    board, clock = TableBoard(), [100.0]
    a, b = Replica("a", board, clock), Replica("b", board, clock)
    a.own = {"ep1:8000": (4, 2)}
    b.own = {"ep2:8000": (1, 0)}
    await _round(clock, a, b)
    assert a.peers == {} and b.peers == {}  # a first sighting does not count yet
    await _round(clock, a, b)
    assert b.peers == {"ep1:8000": (4, 2)}  # b saw a's report advance; a saw b's once
    await _round(clock, a, b)
    assert a.peers == {"ep2:8000": (1, 0)}
    assert b.peers == {"ep1:8000": (4, 2)}
    assert a.metric("poolgate_shared_load_up") == 1
    assert a.metric("poolgate_shared_load_peers") == 1
    a.own = {}
    await _round(clock, a, b)
    assert b.peers == {}


async def test_store_down_keeps_the_view_until_stale_then_local_only(
        caplog: pytest.LogCaptureFixture) -> None:
    board, clock = TableBoard(), [0.0]
    a, b = Replica("a", board, clock), Replica("b", board, clock)
    a.own = {"ep2:8000": (1, 0)}
    b.own = {"ep1:8000": (3, 0)}
    for _ in range(3):
        await _round(clock, a, b)
    assert a.peers == {"ep1:8000": (3, 0)}
    board.down = True
    caplog.set_level(logging.INFO, logger="poolgate.shared_load")
    delays = []
    for _ in range(6):
        delays.append((await _round(clock, a, step=0.1))[0])
    # 0.6 s after the last exchange: still within the staleness bound.
    assert a.peers == {"ep1:8000": (3, 0)}
    assert a.metric("poolgate_shared_load_up") == 0
    assert a.metric("poolgate_shared_load_errors_total", reason="unavailable") == 6
    assert a.metric("poolgate_shared_load_age_seconds") == pytest.approx(0.65)
    # Back-off doubles from the interval (capped by the time left until the view is stale).
    assert delays[:3] == pytest.approx([0.1, 0.2, 0.4])
    for _ in range(5):
        await _round(clock, a, step=0.1)
    assert a.peers == {}
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    board.down = False
    for _ in range(2):
        await _round(clock, a, b)
    assert a.peers == {"ep1:8000": (3, 0)}
    assert a.metric("poolgate_shared_load_up") == 1
    assert sum("reachable again" in r.getMessage() for r in caplog.records) == 1


async def test_a_slow_store_times_out_without_blocking_the_caller() -> None:
    board, clock = TableBoard(), [0.0]
    a = Replica("a", board, clock)
    board.slow = True
    # The exchange gives up after the settings' timeout (0.25 s) instead of hanging.
    await asyncio.wait_for(a.sync.tick(), timeout=30)
    assert a.metric("poolgate_shared_load_errors_total", reason="timeout") == 1
    assert a.metric("poolgate_shared_load_up") == 0
    assert a.metric("poolgate_shared_load_age_seconds") == -1


async def test_a_dead_replica_drops_out_and_is_forgotten_later() -> None:
    board, clock = TableBoard(), [0.0]
    a, b = Replica("a", board, clock), Replica("b", board, clock)
    a.own = {"ep2:8000": (1, 0)}
    b.own = {"ep1:8000": (2, 0)}
    for _ in range(3):
        await _round(clock, a, b)
    assert a.peers == {"ep1:8000": (2, 0)}
    for _ in range(21):  # b died (no more exchanges) 1.05 s ago
        await _round(clock, a)
    assert a.peers == {}
    assert "b" in board.table
    clock[0] += 30.0
    await _round(clock, a)
    await _round(clock, a)
    assert "b" not in board.table


async def test_an_idle_fleet_exchanges_only_every_idle_interval() -> None:
    board, clock = TableBoard(), [0.0]
    a, b = Replica("a", board, clock), Replica("b", board, clock)
    for _ in range(30):  # 1.5 s: nothing in flight anywhere
        await _round(clock, a, b)
    # Every staleness / 2 (0.5 s), not every interval (0.05 s): peers still count each other
    # live, and each view stays fresh for the next request.
    assert board.exchanges <= 8
    assert a.metric("poolgate_shared_load_peers") == 1
    assert a.metric("poolgate_shared_load_age_seconds") < 0.5
    # b gets requests: it publishes at once, and a (idle) learns within the idle interval.
    b.own = {"ep1:8000": (2, 1)}
    before = board.exchanges
    await _round(clock, b)
    assert board.exchanges == before + 1
    for _ in range(10):
        await _round(clock, a, b)
    assert a.peers == {"ep1:8000": (2, 1)}
    # From then on a exchanges every interval: the fleet is busy.
    before = board.exchanges
    for _ in range(5):
        await _round(clock, a)
    assert board.exchanges == before + 5


async def test_an_unexpected_error_drops_the_peers_counts_and_the_task_goes_on(
        caplog: pytest.LogCaptureFixture) -> None:
    board, clock = TableBoard(), [0.0]
    a, b = Replica("a", board, clock), Replica("b", board, clock)
    a.own, b.own = {"ep2:8000": (1, 0)}, {"ep1:8000": (2, 0)}
    for _ in range(3):
        await _round(clock, a, b)
    assert a.peers == {"ep1:8000": (2, 0)}
    broken = [True]

    def own() -> Counts:
        if broken[0]:
            raise RuntimeError("a bug")
        return {"ep2:8000": (1, 0)}

    a.sync.own_counts = own
    a.sync.start()

    async def dropped() -> None:
        while a.peers:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(dropped(), 30)  # a bound for a hang, not a timing assertion
    assert "exchange failed unexpectedly" in caplog.text
    broken[0] = False
    await a.sync.close()
    assert a.sync._task is None


async def test_close_withdraws_and_closes_the_board() -> None:
    board, clock = TableBoard(), [0.0]
    a, b = Replica("a", board, clock), Replica("b", board, clock)
    a.sync.start()
    await asyncio.sleep(0.01)
    await a.sync.close()
    assert "a" not in board.table and board.closed
    # Peers drop a withdrawn replica at their next exchange, not a staleness later.
    b.own = {}
    await _round(clock, b)
    assert b.peers == {}

"""The asyncio layer: CircuitBreaker.acquire waiting FIFO, overflow, and cancellation safety."""

from __future__ import annotations

import asyncio

import pytest

from poolgate.traffic.circuit_breaker import BreakerLimits, CircuitBreaker, MustWait, WaitState
from poolgate.traffic.errors import CircuitOverflow
from poolgate.traffic.pending import wait_for_admission


async def test_seed_000_two_concurrent_acquires_one_admitted_one_overflow() -> None:
    b = CircuitBreaker(BreakerLimits(max_pending_requests=1, max_parallel_requests=1))
    first = await b.acquire()
    with pytest.raises(CircuitOverflow) as caught:
        await b.acquire()
    assert caught.value.reason == "max_parallel_requests"
    assert caught.value.reply().body == (
        b"upstream connect error or disconnect/reset before headers. reset reason: overflow")
    first.release()
    (await b.acquire()).release()


async def test_pending_acquire_proceeds_when_the_connection_frees() -> None:
    b = CircuitBreaker(BreakerLimits(max_connections=1, max_pending_requests=1,
                                     max_parallel_requests=10))
    first = await b.acquire()
    second = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    assert b.pending == 1
    with pytest.raises(CircuitOverflow) as caught:
        await b.acquire()
    assert caught.value.reason == "max_pending_requests"
    assert not second.done()
    first.release()
    ticket = await asyncio.wait_for(second, 5)
    assert (b.active, b.pending) == (1, 0)
    ticket.release()


async def test_waiters_are_served_in_arrival_order() -> None:
    b = CircuitBreaker(BreakerLimits(max_connections=1, max_pending_requests=3))
    held = await b.acquire()
    served: list[int] = []

    async def request(i: int) -> None:
        ticket = await b.acquire()
        served.append(i)
        await asyncio.sleep(0)
        ticket.release()

    tasks = [asyncio.create_task(request(i)) for i in range(3)]
    await asyncio.sleep(0)
    held.release()
    await asyncio.wait_for(asyncio.gather(*tasks), 5)
    assert served == [0, 1, 2]
    assert (b.active, b.pending) == (0, 0)


async def test_cancelling_a_pending_waiter_removes_it_without_leaking() -> None:
    """The client went away while queued: its place is freed, later requests are unaffected."""
    b = CircuitBreaker(BreakerLimits(max_connections=1, max_pending_requests=1))
    held = await b.acquire()
    waiting = asyncio.create_task(b.acquire(retry=True))
    await asyncio.sleep(0)
    assert (b.pending, b.active_retries) == (1, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (b.pending, b.active_retries) == (0, 0)
    held.release()
    assert b.active == 0


async def test_route_timeout_while_pending_gives_the_place_back() -> None:
    b = CircuitBreaker(BreakerLimits(max_connections=1, max_pending_requests=1))
    held = await b.acquire()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.01):
            await b.acquire()
    assert b.pending == 0
    held.release()
    assert b.active == 0


async def test_cancellation_racing_the_hand_over_releases_the_handed_slot() -> None:
    """Admitted by a release and cancelled before resuming: the slot must not stay taken."""
    b = CircuitBreaker(BreakerLimits(max_connections=1, max_pending_requests=1))
    held = await b.acquire()
    waiting = asyncio.create_task(b.acquire())
    await asyncio.sleep(0)
    held.release()  # hands the slot over and wakes the waiter's future...
    waiting.cancel()  # ...but the task is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert (b.active, b.pending) == (0, 0)


async def test_wait_for_an_already_admitted_waiter_returns_at_once() -> None:
    b = CircuitBreaker(BreakerLimits(max_connections=1, max_pending_requests=1))
    held = b.try_acquire()
    decision = b.try_acquire()
    assert isinstance(decision, MustWait)
    held.ticket.release()  # type: ignore[union-attr]
    assert decision.waiter.state is WaitState.ADMITTED
    ticket = await wait_for_admission(decision.waiter)
    assert ticket is decision.waiter.ticket
    ticket.release()
    assert b.active == 0

"""ConcurrencyPolicy bookkeeping, and the asyncio ConcurrencyLimiter waiting on it."""

from __future__ import annotations

import asyncio

import pytest

from poolgate.traffic.concurrency import (
    Admission,
    ConcurrencyLimiter,
    ConcurrencyPolicy,
    ConcurrencyRejected,
    Overflow,
    QueueTimeout,
    Rejected,
)


def policy(limit: int = 2, overflow: Overflow = Overflow.QUEUE, queue: int = 2) -> ConcurrencyPolicy:
    return ConcurrencyPolicy(limit, overflow, queue)


def test_admits_up_to_the_limit_then_queues_then_rejects_when_the_queue_is_full() -> None:
    p = policy()
    assert [p.try_acquire(i) for i in range(5)] == [
        Admission.ADMITTED, Admission.ADMITTED, Admission.QUEUED, Admission.QUEUED,
        Rejected("queue_full"),
    ]
    assert (p.in_flight, p.queued) == (2, 2)
    assert repr(p) == "<ConcurrencyPolicy queue in_flight=2/2 queued=2/2>"


def test_reject_mode_never_queues() -> None:
    p = policy(overflow=Overflow.REJECT)
    assert [p.try_acquire(i) for i in range(3)] == [
        Admission.ADMITTED, Admission.ADMITTED, Rejected("concurrency_limit"),
    ]
    assert p.queued == 0


def test_release_hands_the_slot_to_the_oldest_waiter() -> None:
    p = policy()
    for i in range(4):
        p.try_acquire(i)
    assert p.release() == 2
    assert (p.in_flight, p.queued) == (2, 1)
    assert p.release() == 3
    assert p.release() is None
    assert p.in_flight == 1
    assert p.peak_in_flight == 2


def test_a_newcomer_cannot_overtake_a_waiter() -> None:
    p = policy(limit=1, queue=5)
    p.try_acquire(0)
    p.try_acquire(1)
    p.release()  # ticket 1 now holds the slot
    assert p.try_acquire(2) is Admission.QUEUED


def test_cancel_reports_whether_the_ticket_was_still_waiting() -> None:
    p = policy(limit=1)
    p.try_acquire(0)
    p.try_acquire(1)
    assert p.cancel(1) is True
    assert p.queued == 0
    p.try_acquire(2)
    assert p.release() == 2
    assert p.cancel(2) is False


def test_release_without_acquire_is_a_bug() -> None:
    with pytest.raises(RuntimeError):
        policy().release()


@pytest.mark.parametrize(
    ("limit", "queue"), [pytest.param(0, 1, id="zero-limit"), pytest.param(1, -1, id="negative-queue")]
)
def test_invalid_limits_are_refused(limit: int, queue: int) -> None:
    with pytest.raises(ValueError):
        ConcurrencyPolicy(limit, Overflow.QUEUE, queue)


async def test_limiter_serves_everyone_in_queue_mode_without_exceeding_the_limit() -> None:
    limiter = ConcurrencyLimiter(policy(limit=2, queue=10))
    active = 0
    peak = 0

    async def work() -> None:
        nonlocal active, peak
        async with limiter.slot(timeout=5):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            active -= 1

    await asyncio.gather(*(work() for _ in range(7)))
    assert peak == 2
    assert limiter.policy.in_flight == 0
    assert limiter.policy.peak_in_flight == 2


async def test_limiter_rejects_at_once_in_reject_mode() -> None:
    limiter = ConcurrencyLimiter(policy(limit=1, overflow=Overflow.REJECT))
    await limiter.acquire(None)
    with pytest.raises(ConcurrencyRejected) as info:
        await limiter.acquire(None)
    assert info.value.reason == "concurrency_limit"


async def test_queued_request_times_out_and_leaves_the_queue() -> None:
    limiter = ConcurrencyLimiter(policy(limit=1))
    await limiter.acquire(None)
    with pytest.raises(QueueTimeout):
        await limiter.acquire(0.01)
    assert limiter.policy.queued == 0
    limiter.release()
    assert limiter.policy.in_flight == 0


async def test_cancelled_waiter_that_was_just_handed_a_slot_gives_it_back() -> None:
    limiter = ConcurrencyLimiter(policy(limit=1))
    await limiter.acquire(None)
    waiter = asyncio.create_task(limiter.acquire(None))
    await asyncio.sleep(0)
    limiter.release()  # hands the slot to the waiter...
    waiter.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.policy.in_flight == 0
    assert limiter.policy.queued == 0

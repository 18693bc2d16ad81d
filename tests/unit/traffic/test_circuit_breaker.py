"""CircuitBreaker admission decisions (sync core), BreakerSet reloads, and random sequences."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from poolgate.traffic.circuit_breaker import (
    Admitted,
    BreakerLimits,
    CircuitBreaker,
    MustWait,
    Overflow,
    PendingRequest,
    Ticket,
    WaitState,
)


def breaker(**limits: int | None) -> CircuitBreaker:
    return CircuitBreaker(BreakerLimits(**limits))  # type: ignore[arg-type]


def state(waiter: PendingRequest) -> WaitState:
    """Read through a call so mypy does not keep a narrowed state across a release()."""
    return waiter.state


def admitted(decision: object) -> Ticket:
    assert isinstance(decision, Admitted), decision
    return decision.ticket


def test_seed_000_limits_1_1_second_concurrent_request_overflows_then_third_is_admitted() -> None:
    """Seed 000: maxPendingRequests 1, maxParallelRequests 1, two requests at once."""
    b = breaker(max_pending_requests=1, max_parallel_requests=1)
    first = admitted(b.try_acquire())
    assert b.try_acquire() == Overflow("max_parallel_requests")
    first.release()
    third = admitted(b.try_acquire())
    assert repr(b) == ("<CircuitBreaker active=1/1 pending=0/1 connections=1/1024 retries=0/1024"
                       " overflows=max_parallel_requests:1,max_pending_requests:0,"
                       "max_parallel_retries:0>")
    third.release()
    assert (b.active, b.pending, b.connections_busy) == (0, 0, 0)


def test_connection_limit_queues_one_pending_overflows_the_next_and_hands_over_on_release() -> None:
    b = breaker(max_connections=1, max_pending_requests=1, max_parallel_requests=10)
    first = admitted(b.try_acquire())
    second = b.try_acquire()
    assert isinstance(second, MustWait)
    assert b.try_acquire() == Overflow("max_pending_requests")
    assert (b.active, b.pending) == (1, 1)
    first.release()
    assert state(second.waiter) is WaitState.ADMITTED
    assert second.waiter.ticket is not None and not second.waiter.ticket.released
    assert (b.active, b.pending) == (1, 0)
    second.waiter.ticket.release()
    assert (b.active, b.pending) == (0, 0)


def test_release_is_idempotent() -> None:
    b = breaker(max_connections=1, max_pending_requests=1)
    t = admitted(b.try_acquire())
    waiting = b.try_acquire()
    assert isinstance(waiting, MustWait)
    t.release()
    t.release()  # a second release must not free the slot the waiter now holds
    assert b.active == 1
    assert t.released


def test_ticket_is_a_context_manager() -> None:
    b = breaker()
    with admitted(b.try_acquire()) as t:
        assert b.active == 1
    assert t.released and b.active == 0


@pytest.mark.parametrize(
    ("limits", "held", "retry", "expected"),
    [
        pytest.param({"max_parallel_requests": 0}, 0, False, "max_parallel_requests",
                     id="parallel-zero"),
        pytest.param({"max_parallel_requests": 2}, 2, False, "max_parallel_requests",
                     id="parallel-full-even-with-free-connections"),
        pytest.param({"max_connections": 1, "max_pending_requests": 0}, 1, False,
                     "max_pending_requests", id="no-queue-allowed"),
        pytest.param({"max_parallel_retries": 0}, 0, True, "max_parallel_retries",
                     id="retry-budget-zero"),
        pytest.param({"max_parallel_retries": 0, "max_parallel_requests": 0}, 0, True,
                     "max_parallel_retries", id="retry-limit-checked-first"),
    ],
)
def test_overflow_reason_names_the_limit(limits: dict[str, int], held: int, retry: bool,
                                         expected: str) -> None:
    b = breaker(**limits)
    for _ in range(held):
        admitted(b.try_acquire())
    assert b.try_acquire(retry=retry) == Overflow(expected)
    assert b.overflows_total[expected] == 1
    assert b.last_overflow_reason == expected


def test_retries_count_against_max_parallel_retries_until_released() -> None:
    b = breaker(max_parallel_retries=1)
    r1 = admitted(b.try_acquire(retry=True))
    assert b.try_acquire(retry=True) == Overflow("max_parallel_retries")
    plain = admitted(b.try_acquire())  # a first attempt needs no retry permit
    assert b.active_retries == 1
    r1.release()
    assert b.active_retries == 0
    admitted(b.try_acquire(retry=True))
    plain.release()


def test_a_pending_retry_holds_its_permit_and_keeps_it_when_admitted() -> None:
    b = breaker(max_connections=1, max_parallel_retries=1)
    first = admitted(b.try_acquire())
    waiting = b.try_acquire(retry=True)
    assert isinstance(waiting, MustWait)
    assert b.active_retries == 1
    first.release()
    assert b.active_retries == 1
    ticket = waiting.waiter.ticket
    assert ticket is not None and ticket.retry
    ticket.release()
    assert b.active_retries == 0


def test_cancelled_pending_request_leaves_the_queue_and_returns_its_retry_permit() -> None:
    b = breaker(max_connections=1, max_pending_requests=1)
    first = admitted(b.try_acquire())
    waiting = b.try_acquire(retry=True)
    assert isinstance(waiting, MustWait)
    waiting.waiter.cancel()
    waiting.waiter.cancel()
    assert (b.pending, b.active_retries) == (0, 0)
    assert state(waiting.waiter) is WaitState.CANCELLED
    first.release()
    assert b.active == 0


def test_cancel_after_hand_over_releases_the_unused_slot() -> None:
    b = breaker(max_connections=1)
    first = admitted(b.try_acquire())
    waiting = b.try_acquire()
    assert isinstance(waiting, MustWait)
    first.release()
    assert b.active == 1
    waiting.waiter.cancel()
    assert b.active == 0


def test_pending_requests_are_admitted_first_come_first_served() -> None:
    b = breaker(max_connections=1, max_pending_requests=3)
    held = admitted(b.try_acquire())
    waits = [b.try_acquire() for _ in range(3)]
    order: list[int] = []
    for i, w in enumerate(waits):
        assert isinstance(w, MustWait)

        def record(i: int = i) -> None:
            order.append(i)

        w.waiter.on_admit(record)
    held.release()
    for i in range(3):
        ticket = waits[i].waiter.ticket  # type: ignore[union-attr]
        assert ticket is not None
        ticket.release()
    assert order == [0, 1, 2]


def test_per_endpoint_cap_queues_for_that_endpoint_only() -> None:
    b = breaker(per_endpoint_max_connections=1, max_pending_requests=1)
    a1 = admitted(b.try_acquire("a:1"))
    assert not b.endpoint_has_capacity("a:1")
    waiting = b.try_acquire("a:1")
    assert isinstance(waiting, MustWait)
    other = admitted(b.try_acquire("b:1"))  # another endpoint is not blocked by a's waiter
    assert b.try_acquire("a:1") == Overflow("max_pending_requests")
    other.release()  # frees b's connection: a's waiter still cannot go
    assert state(waiting.waiter) is WaitState.WAITING
    a1.release()
    assert state(waiting.waiter) is WaitState.ADMITTED
    assert b.endpoint_connections("a:1") == 1
    assert waiting.waiter.ticket is not None
    waiting.waiter.ticket.release()
    assert b.endpoint_connections("a:1") == 0


def test_a_waiter_for_a_full_endpoint_does_not_block_a_later_one_for_a_free_endpoint() -> None:
    b = breaker(max_connections=2, per_endpoint_max_connections=1, max_pending_requests=2)
    a = admitted(b.try_acquire("a"))
    bb = admitted(b.try_acquire("b"))
    wait_a = b.try_acquire("a")
    wait_b = b.try_acquire("b")
    assert isinstance(wait_a, MustWait) and isinstance(wait_b, MustWait)
    bb.release()
    assert state(wait_a.waiter) is WaitState.WAITING
    assert state(wait_b.waiter) is WaitState.ADMITTED
    a.release()
    assert state(wait_a.waiter) is WaitState.ADMITTED


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        pytest.param({"max_connections": -1}, "max_connections", id="negative"),
        pytest.param({"max_pending_requests": 1.5}, "max_pending_requests", id="float"),
        pytest.param({"max_requests_per_connection": 0}, "max_requests_per_connection",
                     id="zero-per-connection"),
    ],
)
def test_invalid_limits_are_refused_with_the_field_name(fields: dict[str, object],
                                                        message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BreakerLimits(**fields)  # type: ignore[arg-type]


def test_check_retry_counts_an_overflow_only_at_the_retry_limit() -> None:
    b = breaker(max_parallel_retries=1)
    assert b.check_retry() is None
    ticket = admitted(b.try_acquire(retry=True))
    overflow = b.check_retry()
    assert overflow is not None and overflow.reason == "max_parallel_retries"
    assert b.overflows_total["max_parallel_retries"] == 1
    ticket.release()
    assert b.check_retry() is None


@settings(max_examples=150, deadline=None)
@given(
    limits=st.tuples(st.integers(0, 4), st.integers(0, 3), st.integers(0, 4), st.integers(0, 2),
                     st.one_of(st.none(), st.integers(0, 2))),
    ops=st.lists(st.tuples(st.sampled_from(["acquire", "retry", "release", "cancel"]),
                           st.integers(0, 20), st.sampled_from(["a", "b", None])),
                 max_size=60),
)
def test_random_sequences_never_exceed_limits_and_leave_nothing_behind(
        limits: tuple[int, int, int, int, int | None],
        ops: list[tuple[str, int, str | None]]) -> None:
    conns, pending, parallel, retries, per_ep = limits
    b = breaker(max_connections=conns, max_pending_requests=pending,
                max_parallel_requests=parallel, max_parallel_retries=retries,
                per_endpoint_max_connections=per_ep)
    tickets: list[Ticket] = []
    waiters = []
    for op, index, endpoint in ops:
        if op in ("acquire", "retry"):
            decision = b.try_acquire(endpoint, retry=op == "retry")
            if isinstance(decision, Admitted):
                tickets.append(decision.ticket)
            elif isinstance(decision, MustWait):
                waiters.append(decision.waiter)
        elif op == "release" and tickets:
            tickets[index % len(tickets)].release()
        elif op == "cancel" and waiters:
            waiters[index % len(waiters)].cancel()
        tickets.extend(w.ticket for w in waiters if w.ticket is not None and w.ticket not in tickets)
        held = [t for t in tickets if not t.released]
        assert b.active == len(held) <= min(parallel, conns)
        assert b.pending <= pending
        assert b.active_retries <= retries
        if per_ep is not None:
            for ep in ("a", "b"):
                assert b.endpoint_connections(ep) <= per_ep
    for w in waiters:
        w.cancel()
    for t in tickets:
        t.release()
    assert (b.active, b.pending, b.active_retries) == (0, 0, 0)

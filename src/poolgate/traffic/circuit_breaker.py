"""Envoy-style circuit breaking for one backend cluster (one backendRef of a route rule).

Semantics (Envoy, HTTP/1.1 upstream: one request per busy connection):

1. A retry needs a retry permit: with `max_parallel_retries` retries already admitted or
   pending, it overflows (`"max_parallel_retries"`).
2. A request arriving while `max_parallel_requests` requests are active overflows at once
   (`"max_parallel_requests"`); it is never queued.
3. Otherwise it needs a connection. With fewer than `max_connections` busy (and, when an
   endpoint is named and `per_endpoint_max_connections` is set, fewer than that many busy to
   that endpoint) it takes one and becomes active.
4. Otherwise it waits as pending if fewer than `max_pending_requests` are pending, else
   overflows (`"max_pending_requests"`).

A released connection goes straight to the first pending request that can use it (FIFO,
skipping waiters whose endpoint is still full), so a newcomer never overtakes a waiter.

The core is synchronous bookkeeping: `try_acquire` decides `Admitted | MustWait | Overflow`.
`acquire` is the thin asyncio wrapper (`traffic.pending.wait_for_admission`).
`max_requests_per_connection` is carried for the upstream connection pool (`poolgate.http.client`),
which closes a connection after that many requests; the breaker does not count them.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields
from types import TracebackType

from poolgate.traffic.errors import CircuitOverflow
from poolgate.traffic.pending import wait_for_admission

DEFAULT_LIMIT = 1024

MAX_PARALLEL_REQUESTS = "max_parallel_requests"
MAX_PENDING_REQUESTS = "max_pending_requests"
MAX_PARALLEL_RETRIES = "max_parallel_retries"
OVERFLOW_REASONS = (MAX_PARALLEL_REQUESTS, MAX_PENDING_REQUESTS, MAX_PARALLEL_RETRIES)


@dataclass(frozen=True, slots=True)
class BreakerLimits:
    """The thresholds of one breaker (`BackendTrafficPolicy.spec.circuitBreaker`)."""

    max_connections: int = DEFAULT_LIMIT
    max_pending_requests: int = DEFAULT_LIMIT
    max_parallel_requests: int = DEFAULT_LIMIT
    max_parallel_retries: int = DEFAULT_LIMIT
    max_requests_per_connection: int | None = None  # unset: unlimited (Envoy's default)
    per_endpoint_max_connections: int | None = None  # unset: no per-endpoint cap

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(f"circuit breaker {f.name} must be an integer >= 0, got {value!r}")
        if self.max_requests_per_connection == 0:
            raise ValueError("circuit breaker max_requests_per_connection must be >= 1 when set")


class WaitState(enum.Enum):
    """Where a pending request stands."""

    WAITING = "waiting"
    ADMITTED = "admitted"
    CANCELLED = "cancelled"


class Ticket:
    """One admitted request: holds an active slot and a connection until `release()`."""

    __slots__ = ("_breaker", "_released", "endpoint", "retry")

    def __init__(self, breaker: CircuitBreaker, endpoint: str | None, retry: bool) -> None:
        self._breaker = breaker
        self.endpoint = endpoint
        self.retry = retry
        self._released = False

    @property
    def released(self) -> bool:
        """Whether the slot was given back."""
        return self._released

    def release(self) -> None:
        """Give the slot and connection back and wake the first pending request; idempotent."""
        if self._released:
            return
        self._released = True
        self._breaker._release(self)

    def __enter__(self) -> Ticket:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()

    def __repr__(self) -> str:
        state = "released" if self._released else "held"
        return f"<Ticket endpoint={self.endpoint} retry={self.retry} {state}>"


class PendingRequest:
    """A request waiting for a connection; admitted by a release or given up by `cancel()`."""

    __slots__ = ("_breaker", "_on_admit", "endpoint", "retry", "state", "ticket")

    def __init__(self, breaker: CircuitBreaker, endpoint: str | None, retry: bool) -> None:
        self._breaker = breaker
        self.endpoint = endpoint
        self.retry = retry
        self.state = WaitState.WAITING
        self.ticket: Ticket | None = None
        self._on_admit: Callable[[], None] | None = None

    def on_admit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once admitted (at once if already admitted)."""
        self._on_admit = callback
        if self.state is WaitState.ADMITTED:
            callback()

    def cancel(self) -> None:
        """Stop waiting. If a slot was handed over meanwhile, it is released; idempotent."""
        self._breaker._cancel(self)

    def __repr__(self) -> str:
        return f"<PendingRequest endpoint={self.endpoint} retry={self.retry} {self.state.value}>"


@dataclass(frozen=True, slots=True)
class Admitted:
    """The request may go: it holds `ticket`."""

    ticket: Ticket


@dataclass(frozen=True, slots=True)
class MustWait:
    """The request is queued as pending; wait on `waiter` (or cancel it)."""

    waiter: PendingRequest


@dataclass(frozen=True, slots=True)
class Overflow:
    """The request is refused at once; `reason` names the limit that was reached."""

    reason: str


Admission = Admitted | MustWait | Overflow


class CircuitBreaker:
    """Counts active, pending and retrying requests of one cluster against `BreakerLimits`."""

    def __init__(self, limits: BreakerLimits | None = None) -> None:
        self.limits = limits if limits is not None else BreakerLimits()
        self.active = 0
        self.active_retries = 0
        self.overflows_total: dict[str, int] = dict.fromkeys(OVERFLOW_REASONS, 0)
        self.last_overflow_reason: str | None = None
        self._endpoint_busy: dict[str, int] = {}
        self._waiting: deque[PendingRequest] = deque()

    # -- counters -------------------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Requests waiting for a connection."""
        return len(self._waiting)

    @property
    def connections_busy(self) -> int:
        """Busy upstream connections (HTTP/1.1: one per active request)."""
        return self.active

    def endpoint_connections(self, endpoint: str) -> int:
        """Busy connections to one endpoint (only requests acquired with that endpoint)."""
        return self._endpoint_busy.get(endpoint, 0)

    def endpoint_has_capacity(self, endpoint: str) -> bool:
        """Whether `endpoint` is below `per_endpoint_max_connections` (pickers may prefer it)."""
        cap = self.limits.per_endpoint_max_connections
        return cap is None or self._endpoint_busy.get(endpoint, 0) < cap

    # -- decisions ------------------------------------------------------------------------------

    def try_acquire(self, endpoint: str | None = None, retry: bool = False) -> Admission:
        """Admit, queue or refuse one request (see the module docstring for the order)."""
        limits = self.limits
        if retry and self.active_retries >= limits.max_parallel_retries:
            return self._overflow(MAX_PARALLEL_RETRIES)
        if self.active >= limits.max_parallel_requests:
            return self._overflow(MAX_PARALLEL_REQUESTS)
        if self._has_connection(endpoint):
            return Admitted(self._admit(endpoint, retry))
        if len(self._waiting) >= limits.max_pending_requests:
            return self._overflow(MAX_PENDING_REQUESTS)
        waiter = PendingRequest(self, endpoint, retry)
        if retry:
            self.active_retries += 1
        self._waiting.append(waiter)
        return MustWait(waiter)

    def check_retry(self) -> Overflow | None:
        """Whether a retry may start now: an `Overflow` (counted) when `max_parallel_retries`
        retries are already active or waiting, else None. The retry's own `try_acquire(...,
        retry=True)` then takes the permit with its connection."""
        if self.active_retries >= self.limits.max_parallel_retries:
            return self._overflow(MAX_PARALLEL_RETRIES)
        return None

    async def acquire(self, endpoint: str | None = None, retry: bool = False) -> Ticket:
        """Admit the request, waiting FIFO while pending; raises `CircuitOverflow` at once.

        Bound the wait with the route timeout (`asyncio.timeout`); cancellation gives the
        queue place (or a slot handed over meanwhile) back.
        """
        decision = self.try_acquire(endpoint, retry)
        if isinstance(decision, Admitted):
            return decision.ticket
        if isinstance(decision, Overflow):
            raise CircuitOverflow(decision.reason)
        return await wait_for_admission(decision.waiter)

    # -- bookkeeping ----------------------------------------------------------------------------

    def _overflow(self, reason: str) -> Overflow:
        self.overflows_total[reason] += 1
        self.last_overflow_reason = reason
        return Overflow(reason)

    def _has_connection(self, endpoint: str | None) -> bool:
        if self.active >= self.limits.max_connections:
            return False
        return endpoint is None or self.endpoint_has_capacity(endpoint)

    def _admit(self, endpoint: str | None, retry: bool, take_retry_permit: bool = True) -> Ticket:
        self.active += 1
        if retry and take_retry_permit:
            self.active_retries += 1
        if endpoint is not None:
            self._endpoint_busy[endpoint] = self._endpoint_busy.get(endpoint, 0) + 1
        return Ticket(self, endpoint, retry)

    def _release(self, ticket: Ticket) -> None:
        self.active -= 1
        if ticket.retry:
            self.active_retries -= 1
        if ticket.endpoint is not None:
            left = self._endpoint_busy[ticket.endpoint] - 1
            if left:
                self._endpoint_busy[ticket.endpoint] = left
            else:
                del self._endpoint_busy[ticket.endpoint]
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free connections to pending requests, first come first served."""
        if not self._waiting:
            return
        kept: deque[PendingRequest] = deque()
        while self._waiting:
            waiter = self._waiting.popleft()
            if (self.active < self.limits.max_parallel_requests
                    and self._has_connection(waiter.endpoint)):
                # The retry permit was taken when the waiter queued; do not count it twice.
                waiter.ticket = self._admit(waiter.endpoint, waiter.retry, take_retry_permit=False)
                waiter.state = WaitState.ADMITTED
                if waiter._on_admit is not None:
                    waiter._on_admit()
            else:
                kept.append(waiter)
        self._waiting = kept

    def _cancel(self, waiter: PendingRequest) -> None:
        if waiter.state is WaitState.WAITING:
            waiter.state = WaitState.CANCELLED
            self._waiting.remove(waiter)
            if waiter.retry:
                self.active_retries -= 1
        elif waiter.state is WaitState.ADMITTED:
            # Admitted while its caller was giving up: nobody will use the ticket, free it.
            waiter.state = WaitState.CANCELLED
            assert waiter.ticket is not None
            waiter.ticket.release()

    def __repr__(self) -> str:
        limits = self.limits
        overflows = ",".join(f"{reason}:{n}" for reason, n in self.overflows_total.items())
        return (f"<CircuitBreaker active={self.active}/{limits.max_parallel_requests}"
                f" pending={self.pending}/{limits.max_pending_requests}"
                f" connections={self.connections_busy}/{limits.max_connections}"
                f" retries={self.active_retries}/{limits.max_parallel_retries}"
                f" overflows={overflows}>")

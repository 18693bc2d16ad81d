"""A local concurrency limit with a bounded wait queue or immediate rejection.

Two layers, so the policy is testable without an event loop:

- `ConcurrencyPolicy` is plain synchronous bookkeeping. `try_acquire(ticket)` decides
  `ADMITTED`, `QUEUED` or a `Rejected(reason)`; `release()` frees a slot and, when a ticket is
  waiting, hands the slot straight to it (FIFO) and returns that ticket; `cancel(ticket)` takes a
  waiter out of the queue (timeout, client gone) and says whether it was still waiting.
- `ConcurrencyLimiter` is the thin asyncio waiter around it: one future per queued ticket,
  resolved by `release()`, bounded by a wait timeout.

Because a freed slot is handed to the first waiter inside `release()`, a newcomer can never
overtake a queued request, and `in_flight` never exceeds `max_concurrency`.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


class Overflow(enum.Enum):
    """What happens to a request that arrives while every slot is taken."""

    QUEUE = "queue"
    REJECT = "reject"


class Admission(enum.Enum):
    """A non-rejecting outcome of `ConcurrencyPolicy.try_acquire`."""

    ADMITTED = "admitted"
    QUEUED = "queued"


@dataclass(frozen=True, slots=True)
class Rejected:
    """A request refused at once; `reason` is `"concurrency_limit"` or `"queue_full"`."""

    reason: str


class ConcurrencyPolicy:
    """Counts in-flight requests and queued tickets; sync, no clock, no I/O."""

    def __init__(self, max_concurrency: int, overflow: Overflow, max_queue: int) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if max_queue < 0:
            raise ValueError(f"max_queue must be >= 0, got {max_queue}")
        self.max_concurrency = max_concurrency
        self.overflow = overflow
        self.max_queue = max_queue
        self.in_flight = 0
        self.peak_in_flight = 0
        self._waiting: deque[int] = deque()

    @property
    def queued(self) -> int:
        """How many tickets wait for a slot."""
        return len(self._waiting)

    def try_acquire(self, ticket: int) -> Admission | Rejected:
        """Take a slot for `ticket`, queue it, or reject it (see the module docstring)."""
        if self.in_flight < self.max_concurrency and not self._waiting:
            self._take()
            return Admission.ADMITTED
        if self.overflow is Overflow.REJECT:
            return Rejected("concurrency_limit")
        if len(self._waiting) >= self.max_queue:
            return Rejected("queue_full")
        self._waiting.append(ticket)
        return Admission.QUEUED

    def release(self) -> int | None:
        """Free one slot; returns the waiting ticket that now owns it, if any."""
        if self.in_flight <= 0:
            raise RuntimeError("release() without a matching acquire")
        self.in_flight -= 1
        if self._waiting:
            self._take()
            return self._waiting.popleft()
        return None

    def cancel(self, ticket: int) -> bool:
        """Remove a waiting ticket. False means it was already handed a slot (caller must release)."""
        try:
            self._waiting.remove(ticket)
        except ValueError:
            return False
        return True

    def _take(self) -> None:
        self.in_flight += 1
        self.peak_in_flight = max(self.peak_in_flight, self.in_flight)

    def __repr__(self) -> str:
        return (f"<ConcurrencyPolicy {self.overflow.value} in_flight={self.in_flight}/"
                f"{self.max_concurrency} queued={self.queued}/{self.max_queue}>")


class ConcurrencyRejected(Exception):
    """A request refused without waiting (`reason`: `concurrency_limit` or `queue_full`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class QueueTimeout(Exception):
    """A queued request waited its whole allowance without getting a slot."""


class ConcurrencyLimiter:
    """The asyncio face of `ConcurrencyPolicy`: `async with limiter.slot(timeout):`."""

    def __init__(self, policy: ConcurrencyPolicy) -> None:
        self.policy = policy
        self._tickets = itertools.count()
        self._futures: dict[int, asyncio.Future[None]] = {}

    async def acquire(self, timeout: float | None) -> None:
        """Wait for a slot; raises `ConcurrencyRejected` at once or `QueueTimeout` after `timeout` s."""
        ticket = next(self._tickets)
        outcome = self.policy.try_acquire(ticket)
        if isinstance(outcome, Rejected):
            raise ConcurrencyRejected(outcome.reason)
        if outcome is Admission.ADMITTED:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures[ticket] = future
        try:
            async with asyncio.timeout(timeout):
                await future
        except BaseException as exc:
            # Timeout or outside cancellation: leave the queue, but if release() handed us the
            # slot in the same loop iteration we own it now and must give it back.
            if not self.policy.cancel(ticket):
                self.release()
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(f"no slot within {timeout} s") from None
            raise
        finally:
            self._futures.pop(ticket, None)

    def release(self) -> None:
        """Give a slot back, waking the next queued request if there is one."""
        ticket = self.policy.release()
        if ticket is None:
            return
        future = self._futures.get(ticket)
        if future is not None and not future.done():
            future.set_result(None)

    @asynccontextmanager
    async def slot(self, timeout: float | None) -> AsyncIterator[None]:
        """Hold a slot for the body of an `async with`; released however the body ends."""
        await self.acquire(timeout)
        try:
            yield
        finally:
            self.release()

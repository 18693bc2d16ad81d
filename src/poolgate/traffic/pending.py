"""The asyncio side of a queued admission: await a synchronous waiter's hand-over.

Policy objects (the circuit breaker) decide synchronously and hand a slot to a queued waiter
inside `release()`. This module only turns that hand-over into an awaitable, and makes giving
up safe: on cancellation or timeout the waiter is cancelled, which removes it from the queue,
or, if a slot was handed over in the same instant, releases that slot. Nothing leaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol, TypeVar

T_co = TypeVar("T_co", covariant=True)


class Waiter(Protocol[T_co]):
    """A queued request as the policy sees it."""

    @property
    def ticket(self) -> T_co | None:
        """The admission, once handed over."""
        ...

    def on_admit(self, callback: Callable[[], None]) -> None:
        """Call `callback` once admitted (immediately if already admitted)."""
        ...

    def cancel(self) -> None:
        """Leave the queue, or release an admission nobody will use; idempotent."""
        ...


async def wait_for_admission(waiter: Waiter[T_co]) -> T_co:
    """Wait until `waiter` is admitted and return its ticket; cancellation-safe."""
    admitted = asyncio.get_running_loop().create_future()

    def wake() -> None:
        if not admitted.done():
            admitted.set_result(None)

    waiter.on_admit(wake)
    try:
        await admitted
    except BaseException:
        # Cancelled (client gone, route timeout) or interrupted: give the place or slot back
        # before propagating, so the breaker's counts stay exact.
        waiter.cancel()
        raise
    ticket = waiter.ticket
    if ticket is None:  # pragma: no cover - the policy sets the ticket before waking us
        raise RuntimeError("waiter woke without a ticket")
    return ticket

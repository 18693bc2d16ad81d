"""Small asyncio building blocks shared by the long-running parts of poolgate."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

# The signals that ask a long-running command to stop: SIGTERM from Kubernetes, `kill` or a
# process manager, SIGINT from Ctrl-C.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

log = logging.getLogger("poolgate.signals")


async def cancel_and_wait(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel background tasks and wait until each has finished (their own cancellation is
    expected and swallowed; any other error still propagates)."""
    pending = list(tasks)
    for task in pending:
        task.cancel()
    for task in pending:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class StopSignal:
    """SIGTERM or SIGINT, received by a command's event loop, as a request to stop cleanly.

    The first signal sets `requested` (and wakes `wait()`); the command then stops accepting,
    drains and closes in its own order. A further signal only logs that the stop is under way:
    each drain is bounded by its own time, so cutting it short would trade a clean stop for a few
    seconds, and SIGKILL stays available for that.
    """

    def __init__(self, command: str) -> None:
        self.command = command
        self.received: signal.Signals | None = None
        self._event = asyncio.Event()
        self._installed = False

    @property
    def requested(self) -> bool:
        """True once a stop signal arrived."""
        return self._event.is_set()

    def install(self) -> None:
        """Handle the stop signals in the running loop instead of the default (killed by
        SIGTERM, a KeyboardInterrupt traceback on SIGINT)."""
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, self._on_signal, sig)
        self._installed = True

    def remove(self) -> None:
        """Give the signals back to their defaults (idempotent)."""
        if not self._installed:
            return
        self._installed = False
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)

    async def wait(self) -> None:
        """Return once a stop signal arrived (at once if one already did)."""
        await self._event.wait()

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.received is None:
            self.received = sig
            self._event.set()
            log.info("%s: %s received, stopping", self.command, sig.name)
        else:
            log.info("%s: %s received, already stopping", self.command, sig.name)


def run_until_stopped(command: str, main: Callable[[StopSignal], Awaitable[int]]) -> int:
    """Run a long-running command's `main(stop)` on a fresh event loop (uvloop where available)
    and return its exit code.

    The stop signals are handled from main's first step, so one arriving while the command
    still starts up also ends in its clean stop rather than the default kill.
    """

    async def supervised() -> int:
        stop = StopSignal(command)
        stop.install()
        try:
            return await main(stop)
        finally:
            stop.remove()

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        return runner.run(supervised())


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    # uvloop (Linux, macOS) is the faster loop the proxy's request path and the simulator were
    # measured on.
    try:
        import uvloop
    except ImportError:  # pragma: no cover - Windows: the default loop
        return None
    return uvloop.new_event_loop

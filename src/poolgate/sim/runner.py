"""Drives one Engine in real time on the event loop and hands each request its tokens."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence

from poolgate.core.kv_events import KVEvent
from poolgate.sim.engine import Engine, SimRequest, TokenOutput
from poolgate.sim.metrics import SimMetrics


class EngineRunner:
    """The step loop: schedule, sleep the step's duration / time scale, deliver tokens.

    Simulated time is wall time multiplied by the time scale, so every simulated duration lasts
    `duration / time_scale` real seconds and metrics report simulated seconds.
    """

    def __init__(self, engine: Engine, metrics: SimMetrics, time_scale: float,
                 clock: Callable[[], float] = time.monotonic,
                 kv_events: Callable[[Sequence[KVEvent]], None] | None = None) -> None:
        self.engine = engine
        self._kv_events = kv_events
        if kv_events is not None:
            engine.enable_kv_events()
        self.metrics = metrics
        self.time_scale = time_scale
        self._clock = clock
        self._t0 = clock()
        self._queues: dict[str, asyncio.Queue[TokenOutput]] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        metrics.bind(lambda: float(engine.num_running), lambda: float(engine.num_waiting),
                     lambda: engine.kv.usage)
        self._publish()

    def now(self) -> float:
        """Simulated seconds since the runner started."""
        return (self._clock() - self._t0) * self.time_scale

    async def sleep(self, simulated: float) -> None:
        """Sleep a simulated duration."""
        await asyncio.sleep(simulated / self.time_scale)

    def start(self) -> None:
        """Start the step loop on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        """Stop the step loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def submit(self, req: SimRequest) -> asyncio.Queue[TokenOutput]:
        """Queue a request; its tokens arrive on the returned queue. Raises QueueFull."""
        try:
            self.engine.add(req, self.now())
        finally:
            self.metrics.sync_counters(self.engine.counters)
        queue: asyncio.Queue[TokenOutput] = asyncio.Queue()
        self._queues[req.request_id] = queue
        self._publish()
        self._wake.set()
        return queue

    def release(self, request_id: str) -> None:
        """Forget a request; if it has not finished, abort it and free its slot and KV at once."""
        self._queues.pop(request_id, None)
        if self.engine.abort(request_id):
            self._publish()
            self._wake.set()  # freed capacity may admit a waiting request

    def publish_kv_events(self) -> None:
        """Hand the engine's KV events since the last call to the publisher as one batch."""
        if self._kv_events is not None:
            events = self.engine.take_kv_events()
            if events:
                self._kv_events(events)

    def _publish(self) -> None:
        self.metrics.set_lora_state(self.engine.running_adapters(),
                                    self.engine.waiting_adapters())

    async def _run(self) -> None:
        while True:
            duration = self.engine.begin_step(self.now())
            self.metrics.sync_counters(self.engine.counters)
            self._publish()
            if duration is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await asyncio.sleep(duration / self.time_scale)
            for out in self.engine.end_step(self.now()):
                self.metrics.observe(out)
                queue = self._queues.get(out.request_id)
                if queue is not None:
                    queue.put_nowait(out)
            self.publish_kv_events()
            self.metrics.sync_counters(self.engine.counters)
            self._publish()

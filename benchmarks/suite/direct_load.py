"""Traffic that reaches the replicas without passing through the gateway under test.

Another router in front of the same fleet (a second team's gateway with static affinity, a
batch job pinned to replicas) sends requests of the same workload straight to the replicas:
each group to one fixed replica (`group mod replicas`). Those requests fill and evict the
replicas' prefix caches; a gateway that only knows what it sent itself cannot see either, one
that reads the replicas' KV events sees both. The requests are drawn from the workload's own
seeded generator (the same system prompts, another stream of questions and groups) and sent
open loop on their own Poisson schedule, streamed like the gateway's.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from poolgate.bench import BenchConfig, BenchRequest, RequestRecord, Workload, percentile
from poolgate.bench.arrival import arrival_offsets
from poolgate.bench.client import make_session, send_request

# Where the direct stream's requests start in the workload's warm-up stream: far past any
# warm-up, so the direct traffic never repeats the gateway's warm-up requests.
STREAM_OFFSET = 1_000_000
# The direct stream's arrival seed is the workload's plus this (not the gateway's schedule).
SEED_OFFSET = 7919


def replica_of(group: int, replicas: int) -> int:
    """The replica the direct traffic sends `group` to."""
    return group % replicas


def direct_requests(config: BenchConfig, count: int) -> list[BenchRequest]:
    """The direct stream's first `count` requests."""
    workload = Workload(config)
    return [workload.request(STREAM_OFFSET + i, warmup=True) for i in range(count)]


@dataclass
class DirectTraffic:
    """An open-loop stream straight to the replicas at `rate` requests/s, until stopped."""

    config: BenchConfig
    replica_urls: tuple[str, ...]
    rate: float
    records: list[RequestRecord] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None
    _t0: float = 0.0
    _measuring_from: float | None = None
    _measured_until: float | None = None

    def start(self, horizon: float) -> None:
        """Start sending (for at most `horizon` seconds)."""
        self._task = asyncio.get_running_loop().create_task(self._send(horizon))

    def measure_from_now(self) -> None:
        """Count requests sent from now on in `measured()` (the gateway's measured phase)."""
        self._measuring_from = time.perf_counter()

    def measure_until_now(self) -> None:
        self._measured_until = time.perf_counter()

    async def stop(self) -> None:
        """Stop sending and wait for the requests in flight."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def measured(self) -> list[RequestRecord]:
        """The requests sent inside the measured window."""
        start, end = self._measuring_from, self._measured_until
        if start is None:
            return []
        return [r for r in self.records if r.sent >= start - self._t0 and
                (end is None or r.sent < end - self._t0)]

    async def _send(self, horizon: float) -> None:
        seed = self.config.workload.seed + SEED_OFFSET
        offsets = arrival_offsets("poisson", self.rate, seed=seed, duration=horizon)
        requests = direct_requests(self.config, len(offsets))
        n = len(self.replica_urls)
        headers = {"Content-Type": "application/json", **dict(self.config.headers)}
        path = "/v1/chat/completions" if self.config.api == "chat" else "/v1/completions"
        self._t0 = t0 = time.perf_counter()
        pending: set[asyncio.Task[RequestRecord]] = set()
        async with make_session(self.config.timeout) as session:
            try:
                for due, req in zip(offsets, requests, strict=True):
                    delay = due - (time.perf_counter() - t0)
                    if delay > 0:
                        await asyncio.sleep(delay)
                    url = self.replica_urls[replica_of(req.group or 0, n)] + path
                    task = asyncio.create_task(send_request(
                        session, url, req, stream=self.config.stream, headers=headers, t0=t0,
                        scheduled=due))
                    task.add_done_callback(self._done)
                    pending.add(task)
                    task.add_done_callback(pending.discard)
            finally:
                if pending:
                    await asyncio.gather(*pending, return_exceptions=True)

    def _done(self, task: asyncio.Task[RequestRecord]) -> None:
        if not task.cancelled() and task.exception() is None:
            self.records.append(task.result())


@dataclass(frozen=True, slots=True)
class DirectSummary:
    """The direct stream's requests of the measured window."""

    requests: int
    completed: int
    ttft_p50: float | None
    ttft_p90: float | None
    hit_rate: float | None  # cached / prompt tokens of its completed requests

    @classmethod
    def of(cls, records: list[RequestRecord]) -> DirectSummary:
        ok = [r for r in records if r.ok]
        ttfts = sorted(r.ttft for r in ok if r.ttft is not None)
        prompt = sum(r.prompt_tokens or 0 for r in ok)
        cached = sum(r.cached_tokens or 0 for r in ok)
        return cls(len(records), len(ok), percentile(ttfts, 50) if ttfts else None,
                   percentile(ttfts, 90) if ttfts else None,
                   cached / prompt if prompt else None)

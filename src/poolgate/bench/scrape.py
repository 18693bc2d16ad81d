"""Sampling model servers' `/metrics` during a run: waiting/running queues per endpoint over time."""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp

WAITING = "vllm:num_requests_waiting"
RUNNING = "vllm:num_requests_running"


def parse_gauges(text: str, names: Sequence[str]) -> dict[str, float]:
    """Sum of every series of each named metric in Prometheus text (absent names are left out).

    A line-level parser on purpose: it is called for many endpoints per interval and only needs
    a few unlabelled-or-labelled sample lines, not the whole exposition model.
    """
    wanted = tuple(names)
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line[0] == "#" or not line.startswith(wanted):
            continue
        brace = line.find("{")
        if brace >= 0:
            name = line[:brace]
            value_part = line[line.rindex("}") + 1 :]
        else:
            name, _, value_part = line.partition(" ")
        if name not in wanted:
            continue
        fields = value_part.split()
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        sums[name] = sums.get(name, 0.0) + value
    return sums


@dataclass(frozen=True, slots=True)
class ScrapeRound:
    """One scrape of every endpoint at about the same time; None where an endpoint failed."""

    t: float  # seconds since the start of the measured phase
    waiting: tuple[float | None, ...]
    running: tuple[float | None, ...]


@dataclass(frozen=True, slots=True)
class QueueStats:
    """Waiting-queue balance across endpoints over a run's scrapes."""

    urls: tuple[str, ...]
    rounds: tuple[ScrapeRound, ...]
    mean_waiting: float | None  # over every endpoint and round
    max_waiting: float | None  # the largest single value seen
    worst_max_to_mean: float | None  # max over rounds of max(endpoint)/mean(endpoints), mean > 0
    per_endpoint_max: tuple[float | None, ...] = field(default=())
    per_endpoint_mean: tuple[float | None, ...] = field(default=())

    @classmethod
    def of(cls, urls: Sequence[str], rounds: Sequence[ScrapeRound]) -> QueueStats:
        all_vals = [v for r in rounds for v in r.waiting if v is not None]
        ratios: list[float] = []
        for r in rounds:
            vals = [v for v in r.waiting if v is not None]
            if vals and (mean := math.fsum(vals) / len(vals)) > 0:
                ratios.append(max(vals) / mean)
        per_max: list[float | None] = []
        per_mean: list[float | None] = []
        for i in range(len(urls)):
            clean = [v for r in rounds if (v := r.waiting[i]) is not None]
            per_max.append(max(clean) if clean else None)
            per_mean.append(math.fsum(clean) / len(clean) if clean else None)
        return cls(
            urls=tuple(urls),
            rounds=tuple(rounds),
            mean_waiting=math.fsum(all_vals) / len(all_vals) if all_vals else None,
            max_waiting=max(all_vals) if all_vals else None,
            worst_max_to_mean=max(ratios) if ratios else None,
            per_endpoint_max=tuple(per_max),
            per_endpoint_mean=tuple(per_mean),
        )

    def rounds_above(self, factor: float, *, floor: float = 0.0) -> int:
        """How many rounds had an endpoint whose waiting queue exceeded `factor` × the round's mean
        and also `floor` (so tiny queues like 1 vs a mean of 0.25 can be excused)."""
        count = 0
        for r in self.rounds:
            vals = [v for v in r.waiting if v is not None]
            if not vals:
                continue
            mean = math.fsum(vals) / len(vals)
            if any(v > factor * mean and v > floor for v in vals):
                count += 1
        return count

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": WAITING,
            "urls": list(self.urls),
            "mean_waiting": self.mean_waiting,
            "max_waiting": self.max_waiting,
            "worst_max_to_mean": self.worst_max_to_mean,
            "rounds_above_2x_mean": self.rounds_above(2.0),
            "per_endpoint_max": list(self.per_endpoint_max),
            "per_endpoint_mean": list(self.per_endpoint_mean),
            "rounds": [
                {"t": r.t, "waiting": list(r.waiting), "running": list(r.running)}
                for r in self.rounds
            ],
        }


class MetricsScraper:
    """Scrapes every URL each `interval` seconds in the background until `stop()`."""

    def __init__(
        self, session: aiohttp.ClientSession, urls: Sequence[str], interval: float, t0: float
    ) -> None:
        self._session = session
        self._urls = tuple(urls)
        self._interval = interval
        self._t0 = t0
        self._rounds: list[ScrapeRound] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="bench-scraper")

    async def stop(self) -> QueueStats:
        """Stop scraping (after one final round) and summarise."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self._scrape_round()
        return QueueStats.of(self._urls, self._rounds)

    async def _run(self) -> None:
        next_tick = time.perf_counter()
        while True:
            await self._scrape_round()
            next_tick += self._interval
            await asyncio.sleep(max(0.0, next_tick - time.perf_counter()))

    async def _scrape_round(self) -> None:
        t = time.perf_counter() - self._t0
        results = await asyncio.gather(*(self._scrape(u) for u in self._urls))
        self._rounds.append(
            ScrapeRound(
                t=t,
                waiting=tuple(r.get(WAITING) if r else None for r in results),
                running=tuple(r.get(RUNNING) if r else None for r in results),
            )
        )

    async def _scrape(self, url: str) -> dict[str, float] | None:
        try:
            timeout = aiohttp.ClientTimeout(total=max(self._interval, 1.0))
            async with self._session.get(url, timeout=timeout) as resp:
                if resp.status != 200:
                    return None
                return parse_gauges(await resp.text(), (WAITING, RUNNING))
        except asyncio.CancelledError:
            raise
        except (aiohttp.ClientError, TimeoutError, OSError, UnicodeDecodeError):
            return None

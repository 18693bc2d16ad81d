"""Running a benchmark: warm-up, open- or closed-loop load, scraping and CPU sampling around it."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import time
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
from rich.console import Console

from poolgate.bench.arrival import arrival_offsets
from poolgate.bench.client import make_session, send_request
from poolgate.bench.config import BenchConfig, Target
from poolgate.bench.cpu import CpuUsage, cpu_seconds
from poolgate.bench.errors import BenchError
from poolgate.bench.progress import LiveCounters, RichProgress
from poolgate.bench.records import RequestRecord
from poolgate.bench.result import BenchResult
from poolgate.bench.scrape import MetricsScraper
from poolgate.bench.workload import BenchRequest, Workload

# Warm-up of an open-loop run sends this many requests at a time.
_OPEN_LOOP_WARMUP_CONCURRENCY = 4
_PROGRESS_REFRESH = 0.2

Send = Callable[[BenchRequest, float], Coroutine[Any, Any, RequestRecord]]


async def discover_model(session: aiohttp.ClientSession, target: Target) -> str:
    """The first model `GET /v1/models` of `target` lists (used when no --model is given)."""
    url = target.models_url()
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise BenchError(f"no --model given and {url} is unreachable ({e}); pass --model") from None
    try:
        models = orjson.loads(body)["data"]
        return str(models[0]["id"])
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError):
        raise BenchError(
            f"no --model given and {url} answered {status} without a model list; pass --model"
        ) from None


async def resolve_model(
    session: aiohttp.ClientSession, config: BenchConfig, target: Target
) -> BenchConfig:
    """`config` with its model filled in from `target` when neither --model nor --models was set."""
    wl = config.workload
    if wl.model is not None or wl.models:
        return config
    model = await discover_model(session, target)
    return dataclasses.replace(config, workload=dataclasses.replace(wl, model=model))


async def run_benchmark(
    config: BenchConfig, target: Target, progress: bool = False, *, console: Console | None = None
) -> BenchResult:
    """Benchmark one target with `config` and return its records and measurements."""
    async with make_session(config.timeout) as session:
        config = await resolve_model(session, config, target)
        return await _run(session, config, target, progress, console or Console(stderr=True))


async def run_comparison(
    config: BenchConfig,
    targets: Sequence[Target],
    progress: bool = False,
    *,
    console: Console | None = None,
) -> list[BenchResult]:
    """Benchmark each target in turn on the identical seeded workload."""
    if not targets:
        raise BenchError("no target to benchmark")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise BenchError(f"target names must be unique, got {names}")
    async with make_session(config.timeout) as session:
        config = await resolve_model(session, config, targets[0])
    results = []
    for target in targets:
        results.append(await run_benchmark(config, target, progress, console=console))
    return results


async def _run(
    session: aiohttp.ClientSession,
    config: BenchConfig,
    target: Target,
    progress: bool,
    console: Console,
) -> BenchResult:
    workload = Workload(config)
    load = config.load
    url = target.endpoint(config.api)
    headers = {"Content-Type": "application/json", **dict(config.headers)}
    t0 = 0.0
    counters = LiveCounters()

    async def send(req: BenchRequest, scheduled: float) -> RequestRecord:
        counters.sent += 1
        rec = await send_request(
            session, url, req, stream=config.stream, headers=headers, t0=t0, scheduled=scheduled
        )
        counters.done += 1
        counters.failed += not rec.ok
        return rec

    if load.warmup:
        t0 = time.perf_counter()
        warm = workload.requests(load.warmup, warmup=True)
        warm_concurrency = min(load.warmup, load.concurrency or _OPEN_LOOP_WARMUP_CONCURRENCY)
        await _closed_loop(send, warm.__getitem__, load.warmup, None, warm_concurrency, t0)
        counters = LiveCounters()

    # Everything the measured phase sends is generated before the clock starts.
    offsets: list[float] = []
    prepared: list[BenchRequest] = []
    if load.rate is not None:
        offsets = arrival_offsets(
            load.arrival, load.rate, seed=config.workload.seed,
            count=load.requests, duration=load.duration,
        )
        prepared = workload.requests(len(offsets))
    elif load.requests is not None:
        prepared = workload.requests(load.requests)
    total = len(prepared) if prepared or load.requests is not None else None

    cpu_before = cpu_seconds(target.cpu_pid, children=config.cpu_children) if target.cpu_pid else 0.0
    started_at = datetime.now(UTC).isoformat()
    t0 = time.perf_counter()
    scraper = None
    if config.scrape_urls:
        scraper = MetricsScraper(session, config.scrape_urls, config.scrape_interval, t0)
        scraper.start()

    bar = RichProgress(target.name, total_requests=total, duration=load.duration, console=console) \
        if progress else None
    with bar if bar is not None else contextlib.nullcontext():
        refresher = asyncio.create_task(_refresh(bar, counters, t0)) if bar is not None else None
        try:
            if load.rate is not None:
                records = await _open_loop(send, prepared, offsets, t0)
            else:
                assert load.concurrency is not None  # LoadConfig guarantees rate xor concurrency
                get = prepared.__getitem__ if prepared else workload.request
                records = await _closed_loop(send, get, load.requests, load.duration, load.concurrency, t0)
        finally:
            if refresher is not None:
                refresher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await refresher
        if bar is not None:
            bar.update(counters, time.perf_counter() - t0)

    cpu = None
    if target.cpu_pid:
        used = cpu_seconds(target.cpu_pid, children=config.cpu_children) - cpu_before
        cpu = CpuUsage(target.cpu_pid, config.cpu_children, used, len(records))
    queue = await scraper.stop() if scraper is not None else None
    records.sort(key=lambda r: r.index)
    duration = max((r.finished for r in records), default=0.0)
    return BenchResult(
        target=target, config=config, records=records, duration=duration,
        started_at=started_at, warmup_requests=load.warmup, cpu=cpu, queue=queue,
    )


async def _refresh(bar: RichProgress, counters: LiveCounters, t0: float) -> None:
    while True:
        bar.update(counters, time.perf_counter() - t0)
        await asyncio.sleep(_PROGRESS_REFRESH)


async def _open_loop(
    send: Send, prepared: Sequence[BenchRequest], offsets: Sequence[float], t0: float
) -> list[RequestRecord]:
    """Start request i at t0 + offsets[i] whatever the server does; lag shows as lateness."""
    tasks: list[asyncio.Task[RequestRecord]] = []
    try:
        for req, offset in zip(prepared, offsets, strict=True):
            delay = t0 + offset - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(send(req, offset)))
        return list(await asyncio.gather(*tasks))
    finally:
        for task in tasks:
            task.cancel()


async def _closed_loop(
    send: Send,
    get: Callable[[int], BenchRequest],
    count: int | None,
    duration: float | None,
    concurrency: int,
    t0: float,
) -> list[RequestRecord]:
    """`concurrency` workers, each sending its next request as soon as the previous one ends."""
    indices = itertools.count()
    records: list[RequestRecord] = []

    async def worker() -> None:
        while True:
            now = time.perf_counter() - t0
            if duration is not None and now >= duration:
                return
            i = next(indices)
            if count is not None and i >= count:
                return
            records.append(await send(get(i), now))

    async with asyncio.TaskGroup() as tg:
        for _ in range(concurrency):
            tg.create_task(worker())
    return records

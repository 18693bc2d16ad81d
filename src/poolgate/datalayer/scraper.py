"""Scraping every model server's `/metrics` into an `EndpointStore`, as often as its pool needs.

Each endpoint has its own asyncio task: scrape, sleep for the rest of the interval, repeat. There
is no round barrier, so a slow or dead endpoint only delays its own next scrape (bounded by
`timeout`); the others keep their cadence. Starts are spread over the first interval so that many
endpoints do not fire in lockstep. All tasks share one `poolgate.http.client.UpstreamPool` of their own
(plain HTTP/1.1, keep-alive, parsed by llhttp): a general-purpose client cost more CPU per scrape
than parsing the page.

The interval adapts (`ScrapeCadence`): the gateway calls `pool_requested` for every request
bound for a pool; an endpoint none of whose pools had a request in `idle_after` seconds is
scraped every `idle_interval` seconds instead, and the next request wakes its task to scrape at
once and go back to the base interval.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable

from poolgate._aio import cancel_and_wait
from poolgate.datalayer.metric_names import MetricNames
from poolgate.datalayer.metrics_parser import MetricsParseError, detect_server, parse_signals
from poolgate.datalayer.scraper_cadence import ScrapeCadence
from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import DEFAULT_STALENESS, EndpointStore
from poolgate.http.client import (
    BodyError,
    BodyTooLarge,
    UpstreamFailure,
    UpstreamPool,
    UpstreamResponse,
)

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 0.05
DEFAULT_MAX_PAGE_BYTES = 8 * 1024 * 1024
# Plain text only: no Accept-Encoding, so servers answer uncompressed (nothing to inflate).
_REQUEST_HEADERS = (("Accept", "text/plain"),)


class ScrapeError(Exception):
    """One scrape failed; the message says why (timeout, connection, status, size, parse)."""


class MetricsScraper:
    """Keeps an `EndpointStore`'s signals fresh by scraping each endpoint every `interval` seconds,
    or as a `ScrapeCadence` says: its base interval while requests flow to the endpoint's pools,
    its idle interval once none has been bound for them (`pool_requested`) for a while.

    `timeout` bounds one scrape (connect + full body); it defaults to half the staleness bound,
    at most 1 s, so a hung server is noticed before its last good signals would go stale anyway.
    `staleness` is the age past which readers should treat signals as unknown; the scraper only
    reports it (`EndpointStore.fresh_signals` applies it) and keeps the idle interval at or
    under half of it. An endpoint starts out busy. Call `start()` inside a running event loop
    and `await close()` when done; `set_endpoints()` may be called at any time.
    Only `scheme="http"` is supported (the client speaks plain HTTP/1.1).
    """

    def __init__(self, store: EndpointStore, interval: float | ScrapeCadence = DEFAULT_INTERVAL,
                 timeout: float | None = None, staleness: float = DEFAULT_STALENESS, *,
                 path: str = "/metrics", scheme: str = "http",
                 max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES, seed: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(interval, ScrapeCadence):
            cadence = interval
        elif interval <= 0:
            raise ValueError(f"scrape interval must be > 0 seconds, got {interval}")
        else:
            cadence = ScrapeCadence.fixed(interval)
        if staleness <= 0:
            raise ValueError(f"staleness must be > 0 seconds, got {staleness}")
        self.store = store
        self.staleness = staleness
        self.cadence = cadence.within(staleness)
        self.interval = self.cadence.base
        self.timeout = timeout if timeout is not None else min(1.0, staleness / 2)
        if self.timeout <= 0:
            raise ValueError(f"scrape timeout must be > 0 seconds, got {self.timeout}")
        if scheme != "http":
            raise ValueError(f"metrics scraping supports only scheme 'http' (plain HTTP/1.1), "
                             f"got {scheme!r}")
        self._path = path if path.startswith("/") else "/" + path
        self._scheme = scheme
        self._max_page_bytes = max_page_bytes
        self._rng = random.Random(seed)
        self._clock = clock
        self._addresses: list[str] = []
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._kinds: dict[str, MetricNames] = {}
        self._failing: set[str] = set()
        # Clock time of the last request bound for a pool of each endpoint (`pool_requested`).
        self._last_request: dict[str, float] = {}
        # The endpoints sleeping an idle interval, with the future that wakes them.
        self._napping: dict[str, asyncio.Future[None]] = {}
        self._pool: UpstreamPool | None = None
        self._closed = False

    @property
    def endpoints(self) -> list[str]:
        """The addresses being scraped, in the order given to `set_endpoints`."""
        return list(self._addresses)

    @property
    def running(self) -> bool:
        """True between `start()` and `close()`."""
        return self._pool is not None and not self._closed

    def set_endpoints(self, addresses: Iterable[str]) -> None:
        """Scrape exactly `addresses` from now on (duplicates ignored); cheap when unchanged."""
        wanted = list(dict.fromkeys(addresses))
        self._addresses = wanted
        if not self.running:
            return
        keep = set(wanted)
        for address in [a for a in self._tasks if a not in keep]:
            self._tasks.pop(address).cancel()
            self._kinds.pop(address, None)
            self._failing.discard(address)
            self._last_request.pop(address, None)
        for address in wanted:
            if address not in self._tasks:
                self._spawn(address, first_delay=self._rng.uniform(0, self.interval))

    def pool_requested(self, addresses: Iterable[str]) -> None:
        """A request is bound for a pool of `addresses`: scrape them at the base interval again,
        at once where they had backed off. Called by the gateway for every such request (cheap:
        a clock read and a dict write per address)."""
        now = self._clock()
        last, napping = self._last_request, self._napping
        for address in addresses:
            last[address] = now
            if napping:
                wake = napping.pop(address, None)
                if wake is not None and not wake.done():
                    wake.set_result(None)

    def idle_for(self, address: str) -> float:
        """Seconds since a request was last bound for a pool of `address` (inf: never)."""
        last = self._last_request.get(address)
        return math.inf if last is None else self._clock() - last

    def current_interval(self, address: str) -> float:
        """The interval `address` is scraped at now."""
        return self.cadence.interval(self.idle_for(address))

    def start(self) -> None:
        """Open the connection pool and start one scrape task per endpoint (in a running loop)."""
        if self._closed:
            raise RuntimeError("MetricsScraper was closed; create a new one")
        if self._pool is not None:
            return
        asyncio.get_running_loop()
        # No connection limit: concurrency is already one request per endpoint at a time. The
        # pool's own connect timeout only backs up `self.timeout`, which bounds the whole scrape.
        self._pool = UpstreamPool(connect_timeout=self.timeout)
        self.set_endpoints(self._addresses)

    async def close(self) -> None:
        """Stop every scrape task and close every connection (idempotent)."""
        self._closed = True
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)
        if self._pool is not None:
            await self._pool.close()

    async def scrape_once(self, address: str) -> Signals:
        """Scrape `address` once and record the outcome in the store; raises `ScrapeError`."""
        try:
            signals = await self._fetch(address)
        except ScrapeError as exc:
            self.store.record_failure(address, str(exc), self._clock())
            if address not in self._failing:
                self._failing.add(address)
                log.warning("metrics scrape of %s failing: %s", address, exc)
            raise
        self.store.update(address, signals)
        if address in self._failing:
            self._failing.discard(address)
            log.info("metrics scrape of %s recovered", address)
        return signals

    def _spawn(self, address: str, first_delay: float) -> None:
        # A new endpoint starts busy: its first picture comes at the base interval.
        self._last_request.setdefault(address, self._clock())
        task = asyncio.get_running_loop().create_task(
            self._run(address, first_delay), name=f"poolgate-scrape:{address}")
        self._tasks[address] = task

    async def _run(self, address: str, first_delay: float) -> None:
        await asyncio.sleep(first_delay)
        loop = asyncio.get_running_loop()
        cadence = self.cadence
        while True:
            started = loop.time()
            with contextlib.suppress(ScrapeError):
                await self.scrape_once(address)
            idle_for = self.idle_for(address)
            delay = max(0.0, cadence.interval(idle_for) - (loop.time() - started))
            if cadence.is_idle(idle_for):
                await self._nap(address, delay)
            else:
                await asyncio.sleep(delay)

    async def _nap(self, address: str, delay: float) -> None:
        """Sleep `delay` seconds, or until `pool_requested` names `address`."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(delay, _set_done, wake)
        self._napping[address] = wake
        try:
            await wake
        finally:
            timer.cancel()
            if self._napping.get(address) is wake:
                del self._napping[address]

    async def _fetch(self, address: str) -> Signals:
        pool = self._pool
        if pool is None:
            raise RuntimeError("MetricsScraper.start() was not called")
        url = f"{self._scheme}://{address}{self._path}"
        limit = self._max_page_bytes
        resp: UpstreamResponse | None = None
        try:
            async with asyncio.timeout(self.timeout):
                resp = await pool.request(address, "GET", self._path, _REQUEST_HEADERS, b"")
                if resp.status != 200:
                    raise ScrapeError(f"GET {url}: HTTP {resp.status}")
                length = resp.content_length
                if length is not None and length > limit:
                    raise ScrapeError(f"GET {url}: page of {length} bytes is too large")
                body = await resp.read(limit)
        except TimeoutError as exc:
            raise ScrapeError(f"GET {url}: no complete answer within {self.timeout:g}s") from exc
        except BodyTooLarge as exc:
            raise ScrapeError(f"GET {url}: page larger than {limit} bytes") from exc
        except UpstreamFailure as exc:
            raise ScrapeError(f"GET {url}: {exc}") from exc
        except BodyError as exc:
            raise ScrapeError(f"GET {url}: connection broke off mid-page: {exc}") from exc
        finally:
            if resp is not None:
                # A complete body leaves the connection reusable; anything else (error status,
                # oversize, timeout, break) closes it rather than read what is left.
                if resp.complete:
                    resp.release()
                else:
                    resp.close()
        scraped_at = self._clock()
        return self._parse(address, body.decode("utf-8", errors="replace"), scraped_at)

    def _parse(self, address: str, text: str, scraped_at: float) -> Signals:
        kind = self._kinds.get(address)
        try:
            if kind is not None:
                try:
                    return parse_signals(text, scraped_at, kind)
                except MetricsParseError:
                    # The server behind the address may have been replaced by another kind.
                    del self._kinds[address]
            kind = detect_server(text)
            signals = parse_signals(text, scraped_at, kind)
        except MetricsParseError as exc:
            raise ScrapeError(f"{address}: {exc}") from exc
        self._kinds[address] = kind
        return signals


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)

"""The metrics scraper against real HTTP servers on 127.0.0.1: captured vLLM pages, a server that
hangs, one that is down, one that fails; and against `poolgate sim` when it is available."""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from poolgate.datalayer.scraper import MetricsScraper, ScrapeError
from poolgate.datalayer.scraper_cadence import ScrapeCadence
from poolgate.datalayer.store import EndpointStore
from poolgate.http.client import BodyTooLarge, UpstreamPool
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "metrics"

Serve = Callable[[web.Application], Awaitable[str]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start aiohttp apps on free loopback ports; returns their `host:port`; stops them after."""
    runners: list[web.AppRunner] = []

    async def start(app: web.Application) -> str:
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        runners.append(runner)
        port = free_port()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return f"127.0.0.1:{port}"

    yield start
    for runner in runners:
        await runner.cleanup()


class Page:
    """A metrics page whose text and status the test can change while it is served."""

    def __init__(self, fixture: str) -> None:
        self.text = (FIXTURES / fixture).read_text()
        self.status = 200
        self.hits = 0

    def app(self) -> web.Application:
        async def metrics(request: web.Request) -> web.Response:
            self.hits += 1
            return web.Response(text=self.text, status=self.status,
                                content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app


def hanging_app(release: asyncio.Event) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        await release.wait()
        return web.Response(text="")

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    return app


async def wait_until(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def ok_count(store: EndpointStore, address: str) -> int:
    state = store.get(address)
    return state.scrapes_ok if state is not None else 0


def fail_count(store: EndpointStore, address: str) -> int:
    state = store.get(address)
    return state.scrapes_failed if state is not None else 0


async def test_slow_and_dead_endpoints_do_not_stall_the_others(serve: Serve) -> None:
    idle, busy = Page("vllm_idle.txt"), Page("vllm_during_load.txt")
    release = asyncio.Event()
    idle_addr = await serve(idle.app())
    busy_addr = await serve(busy.app())
    hang_addr = await serve(hanging_app(release))
    down_addr = f"127.0.0.1:{free_port()}"
    store = EndpointStore()
    scraper = MetricsScraper(store, interval=0.05, timeout=0.4, staleness=2.0, seed=1)
    scraper.set_endpoints([idle_addr, busy_addr, hang_addr, down_addr])
    scraper.start()
    try:
        await wait_until(lambda: ok_count(store, busy_addr) >= 1
                         and fail_count(store, down_addr) >= 1)
        before = ok_count(store, idle_addr), ok_count(store, busy_addr)
        await asyncio.sleep(0.8)
        gained = ok_count(store, idle_addr) - before[0], ok_count(store, busy_addr) - before[1]
        # About 16 scrapes each in 0.8 s at 50 ms; the hung endpoint (0.4 s timeout) got 2.
        assert min(gained) >= 6, gained
        now = time.monotonic()
        busy_signals = store.fresh_signals(busy_addr, now)
        assert busy_signals is not None
        assert (busy_signals.waiting, busy_signals.running) == (29, 11)
        idle_signals = store.fresh_signals(idle_addr, now)
        assert idle_signals is not None
        assert idle_signals.waiting == 0
        assert store.fresh_signals(hang_addr, now) is None
        assert store.fresh_signals(down_addr, now) is None
        hang_state = store.get(hang_addr)
        assert hang_state is not None
        assert hang_state.last_error is not None
        assert "no complete answer within 0.4s" in hang_state.last_error
        down_state = store.get(down_addr)
        assert down_state is not None
        assert down_state.last_error is not None
        assert "connection failure" in down_state.last_error
    finally:
        release.set()
        await scraper.close()


async def test_changes_errors_and_staleness(serve: Serve) -> None:
    page = Page("vllm_idle.txt")
    address = await serve(page.app())
    store = EndpointStore()
    scraper = MetricsScraper(store, interval=0.03, staleness=0.5, seed=2)
    assert scraper.timeout == 0.25
    scraper.set_endpoints([address])
    scraper.start()
    try:
        await wait_until(lambda: store.fresh_signals(address, time.monotonic()) is not None)
        page.text = (FIXTURES / "vllm_during_load.txt").read_text()

        def sees_load() -> bool:
            s = store.fresh_signals(address, time.monotonic())
            return s is not None and s.waiting == 29

        await wait_until(sees_load)
        page.status = 500
        await wait_until(lambda: fail_count(store, address) >= 2)
        state = store.get(address)
        assert state is not None
        assert state.last_error is not None
        assert "HTTP 500" in state.last_error
        # The last good signals go stale on their own once scrapes keep failing.
        await wait_until(lambda: store.fresh_signals(address, time.monotonic()) is None)
        assert store.signals(address) is not None
        page.status = 200
        page.text = "<html>not metrics</html>"
        await wait_until(lambda: "no queue metric" in (store.get(address).last_error or ""))  # type: ignore[union-attr]
    finally:
        await scraper.close()


async def test_set_endpoints_adds_and_removes(serve: Serve) -> None:
    first, second = Page("vllm_idle.txt"), Page("sglang_sample.txt")
    a = await serve(first.app())
    b = await serve(second.app())
    store = EndpointStore()
    scraper = MetricsScraper(store, interval=0.03, seed=3)
    scraper.set_endpoints([a])
    scraper.start()
    try:
        await wait_until(lambda: first.hits >= 2)
        scraper.set_endpoints([b, b])
        assert scraper.endpoints == [b]
        await wait_until(lambda: ok_count(store, b) >= 2)
        signals = store.fresh_signals(b, time.monotonic())
        assert signals is not None
        assert (signals.waiting, signals.running) == (3, 6)
        hits = first.hits
        await asyncio.sleep(0.2)
        assert first.hits == hits
    finally:
        await scraper.close()
    await scraper.close()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        scraper.start()


async def test_scrape_once_raises_with_the_reason() -> None:
    store = EndpointStore()
    address = f"127.0.0.1:{free_port()}"
    scraper = MetricsScraper(store, timeout=0.5)
    scraper.start()
    try:
        with pytest.raises(ScrapeError, match=f"GET http://{address}/metrics"):
            await scraper.scrape_once(address)
        assert fail_count(store, address) == 1
    finally:
        await scraper.close()


async def test_an_idle_pool_is_scraped_slowly_and_a_request_brings_fast_scrapes_back(
        serve: Serve) -> None:
    """Issue 16, item 5: no request for `idle_after` seconds -> the idle interval; the first
    request scrapes at once, and while requests flow a page change shows within a few base
    intervals."""
    page = Page("vllm_idle.txt")
    address = await serve(page.app())
    store = EndpointStore()
    scraper = MetricsScraper(store, ScrapeCadence(0.02, 0.5, idle_after=0.2), seed=4)
    scraper.set_endpoints([address])
    scraper.start()
    try:
        await asyncio.sleep(0.5)  # busy at start, idle from 0.2 s on
        assert scraper.current_interval(address) == 0.5
        hits = page.hits
        await asyncio.sleep(1.2)
        assert page.hits - hits <= 4, page.hits - hits  # about 2 at 0.5 s, not 60 at 20 ms

        # The first request bound for the pool: a scrape at once, not after the idle interval.
        hits = page.hits
        page.text = (FIXTURES / "vllm_during_load.txt").read_text()
        woken = time.monotonic()
        scraper.pool_requested([address])
        await wait_until(lambda: page.hits > hits, timeout=0.3)
        assert time.monotonic() - woken < 0.3

        # Requests keep flowing: scraped every 20 ms again, and the signals follow the page.
        hits = page.hits
        for _ in range(25):
            scraper.pool_requested([address])
            await asyncio.sleep(0.02)
        assert page.hits - hits >= 10, page.hits - hits
        signals = store.fresh_signals(address, time.monotonic())
        assert signals is not None and signals.waiting == 29
        assert time.monotonic() - signals.scraped_at < 0.2
    finally:
        await scraper.close()


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="interval"):
        MetricsScraper(EndpointStore(), interval=0)
    with pytest.raises(ValueError, match="staleness"):
        MetricsScraper(EndpointStore(), staleness=0)


# -- the HTTP/1.1 details of a scrape, against raw servers that misbehave on purpose ------------

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
RawServe = Callable[[RawHandler], Awaitable[str]]


@pytest.fixture
async def raw_serve() -> AsyncIterator[RawServe]:
    """Start asyncio servers on free loopback ports that write raw HTTP bytes; stops them after."""
    servers: list[asyncio.Server] = []

    async def start(handler: RawHandler) -> str:
        port = free_port()
        servers.append(await asyncio.start_server(handler, "127.0.0.1", port))
        return f"127.0.0.1:{port}"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def chunked(body: bytes, pieces: int) -> bytes:
    """`body` in HTTP/1.1 chunked encoding, in `pieces` chunks, with the final empty chunk."""
    step = -(-len(body) // pieces)
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + step]), body[i:i + step])
                   for i in range(0, len(body), step))
    return out + b"0\r\n\r\n"


async def read_head(reader: asyncio.StreamReader) -> str:
    return (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")


async def test_chunked_page_over_one_reused_connection(raw_serve: RawServe) -> None:
    page = (FIXTURES / "vllm_during_load.txt").read_bytes()
    heads: list[str] = []
    connections = 0

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                heads.append(await read_head(reader))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                             b"Transfer-Encoding: chunked\r\n\r\n" + chunked(page, 7))
                await writer.drain()
        writer.close()

    address = await raw_serve(handler)
    store = EndpointStore()
    scraper = MetricsScraper(store, timeout=1.0)
    scraper.start()
    try:
        for _ in range(4):
            signals = await scraper.scrape_once(address)
            assert (signals.waiting, signals.running) == (29, 11)
    finally:
        await scraper.close()
    assert connections == 1, "the keep-alive connection was not reused"
    assert len(heads) == 4
    request_line, *header_lines = heads[0].strip().split("\r\n")
    assert request_line == "GET /metrics HTTP/1.1"
    headers = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in header_lines)}
    assert headers["accept"] == "text/plain"
    assert headers["host"] == address
    assert "accept-encoding" not in headers


async def test_oversized_pages_are_refused_without_reading_them(raw_serve: RawServe) -> None:
    disconnected = asyncio.Event()
    sent = 0

    async def declared(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b"#" * 5000)
        await writer.drain()
        writer.close()

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # No length: chunks until the client hangs up.
        nonlocal sent
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        try:
            while sent < 50_000_000:
                writer.write(b"4000\r\n" + b"#" * 0x4000 + b"\r\n")
                sent += 0x4000
                await writer.drain()
        except ConnectionError:
            disconnected.set()
        writer.close()

    big = await raw_serve(declared)
    stream = await raw_serve(endless)
    store = EndpointStore()
    scraper = MetricsScraper(store, timeout=5.0, max_page_bytes=4096)
    scraper.start()
    try:
        expected = re.escape(f"GET http://{big}/metrics: page of 5000 bytes is too large")
        with pytest.raises(ScrapeError, match=expected):
            await scraper.scrape_once(big)
        expected = re.escape(f"GET http://{stream}/metrics: page larger than 4096 bytes")
        with pytest.raises(ScrapeError, match=expected):
            await scraper.scrape_once(stream)
        await asyncio.wait_for(disconnected.wait(), 5.0)
    finally:
        await scraper.close()
    # The connection was closed at the cap, long before the server ran out of page.
    assert sent < 20_000_000, sent
    state = store.get(stream)
    assert state is not None and state.scrapes_failed == 1


@pytest.mark.parametrize("framing", ["content-length", "chunked", "chunked-close"])
async def test_server_closing_mid_page_is_a_scrape_error(raw_serve: RawServe, framing: str) -> None:
    page = (FIXTURES / "vllm_idle.txt").read_bytes()
    if framing == "content-length":
        head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(page)
        partial = page[: len(page) // 2]
    else:
        # A chunked body has its own end marker: a close before it is a break even when the
        # server announced `Connection: close`.
        close = b"Connection: close\r\n" if framing == "chunked-close" else b""
        head = b"HTTP/1.1 200 OK\r\n" + close + b"Transfer-Encoding: chunked\r\n\r\n"
        partial = chunked(page, 4)[: len(page) // 2]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(head + partial)
        await writer.drain()
        writer.close()

    address = await raw_serve(handler)
    store = EndpointStore()
    scraper = MetricsScraper(store, timeout=2.0)
    scraper.start()
    try:
        with pytest.raises(ScrapeError, match="connection broke off mid-page"):
            await scraper.scrape_once(address)
    finally:
        await scraper.close()
    assert store.signals(address) is None


@pytest.mark.parametrize("stall", ["before-head", "mid-body"])
async def test_a_timed_out_scrape_closes_its_connection(raw_serve: RawServe, stall: str) -> None:
    """A scrape that times out leaves the request in flight: its connection must be closed (not
    reused, not leaked), which the server sees as end of stream."""
    saw_close = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        if stall == "mid-body":
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n# partial\n")
            await writer.drain()
        if await reader.read(1) == b"":
            saw_close.set()
        writer.close()

    address = await raw_serve(handler)
    scraper = MetricsScraper(EndpointStore(), timeout=0.2)
    scraper.start()
    try:
        with pytest.raises(ScrapeError, match=re.escape("no complete answer within 0.2s")):
            await scraper.scrape_once(address)
        await asyncio.wait_for(saw_close.wait(), 2.0)
    finally:
        await scraper.close()


async def test_error_status_then_recovery_on_a_new_connection(serve: Serve) -> None:
    page = Page("vllm_idle.txt")
    address = await serve(page.app())
    store = EndpointStore()
    scraper = MetricsScraper(store, timeout=1.0)
    scraper.start()
    try:
        page.status = 503
        with pytest.raises(ScrapeError, match=re.escape(f"GET http://{address}/metrics: HTTP 503")):
            await scraper.scrape_once(address)
        page.status = 200
        assert (await scraper.scrape_once(address)).waiting == 0
        state = store.get(address)
        assert state is not None and (state.scrapes_ok, state.scrapes_failed) == (1, 1)
    finally:
        await scraper.close()


async def test_whole_body_read_past_the_flow_control_mark(raw_serve: RawServe) -> None:
    """`UpstreamResponse.read` returns bodies larger than the 256 KiB read-pause mark, and with a
    limit stops at it."""
    body = bytes(range(256)) * 4096  # 1 MiB

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                await read_head(reader)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
                await writer.drain()
        writer.close()

    address = await raw_serve(handler)
    pool = UpstreamPool(connect_timeout=2.0)
    try:
        resp = await pool.request(address, "GET", "/", [], b"")
        assert await asyncio.wait_for(resp.read(), 5.0) == body
        assert resp.complete
        resp.release()
        resp = await pool.request(address, "GET", "/", [], b"")
        with pytest.raises(BodyTooLarge):
            await asyncio.wait_for(resp.read(len(body) - 1), 5.0)
        resp.release()  # already closed by read: a no-op
        resp = await pool.request(address, "GET", "/", [], b"")
        assert await asyncio.wait_for(resp.read(len(body)), 5.0) == body
        resp.release()
    finally:
        await pool.close()


def _sim_command_available() -> bool:
    from poolgate import cli

    return any(c.name == "sim" for c in cli.app.registered_commands)


@pytest.mark.skipif(not _sim_command_available(), reason="`poolgate sim` is not built yet")
async def test_scrapes_poolgate_sim(procs: ProcessGroup) -> None:
    from tests.support.processes import free_port_range

    port = free_port_range(2)
    proc = procs.start(poolgate_command("sim", "--replicas", "2", "--port", str(port),
                                        "--profile", "fast", "--seed", "1"))
    addresses = [f"127.0.0.1:{port}", f"127.0.0.1:{port + 1}"]
    for address in addresses:
        await asyncio.to_thread(wait_http, f"http://{address}/metrics", 30.0, proc)
    store = EndpointStore()
    scraper = MetricsScraper(store, interval=0.05, seed=4)
    scraper.set_endpoints(addresses)
    scraper.start()
    try:
        await wait_until(lambda: all(store.fresh_signals(a, time.monotonic()) is not None
                                     for a in addresses), timeout=10.0)
        for address in addresses:
            signals = store.fresh_signals(address, time.monotonic())
            assert signals is not None
            assert signals.waiting == 0
            assert 0.0 <= signals.kv_usage <= 1.0
    finally:
        await scraper.close()

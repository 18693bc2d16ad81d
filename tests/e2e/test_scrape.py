"""The metrics scraper against real HTTP servers on 127.0.0.1: captured vLLM pages, a server that
hangs, one that is down, one that fails; and against `poolgate sim` when it is available."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
from aiohttp import web

from poolgate.datalayer.scraper import MetricsScraper, ScrapeError
from poolgate.datalayer.store import EndpointStore
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
        assert "ClientConnectorError" in down_state.last_error
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


def test_bad_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="interval"):
        MetricsScraper(EndpointStore(), interval=0)
    with pytest.raises(ValueError, match="staleness"):
        MetricsScraper(EndpointStore(), staleness=0)


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

"""The per-cluster settings of a BackendTrafficPolicy / HTTPRoute that act on each attempt or
connection: `retry.perRetry.timeout`, `timeouts.backendRequest`, `timeout.tcp.connectTimeout`,
`circuitBreaker.perEndpoint.maxConnections`, `circuitBreaker.maxRequestsPerConnection` and
`timeout.http.connectionIdleTimeout`, each through the real gateway."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.e2e.gateway_fleet import Fleet, start_fleet
from tests.e2e.test_gateway_policies import REQUEST, RESET, _faults, _gateway
from tests.support.apps import serve_app
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e


@pytest.fixture
def fleet(procs: ProcessGroup) -> Fleet:
    return start_fleet(procs, 2)


async def _post(s: aiohttp.ClientSession, url: str) -> tuple[int, str]:
    async with s.post(f"{url}/v1/completions", json=REQUEST) as r:
        return r.status, await r.text()


# -- per-attempt timeout ---------------------------------------------------------------------


async def test_per_retry_timeout_retries_a_hung_attempt_on_another_endpoint(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses, """\
  retry:
    numRetries: 1
    retryOn: {triggers: [5xx]}
    perRetry: {timeout: 300ms, backOff: {baseInterval: 10ms}}
""")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], hang_rate=1.0)
        started = time.monotonic()
        results = [await _post(s, gw.url) for _ in range(6)]
        elapsed = time.monotonic() - started
    assert [status for status, _ in results] == [200] * 6
    records = await gw.access_log(6)
    assert {rec["endpoint"] for rec in records} == {fleet.addresses[1]}
    hung = [rec for rec in records if rec["attempts"] == 2]
    assert hung, "no request was first sent to the hung replica"
    # Each hung attempt cost about the per-try timeout, not the hang (which never ends).
    assert elapsed < 6 * 0.3 + 5


async def test_per_retry_timeout_without_a_matching_trigger_answers_504(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses[:1], """\
  retry:
    numRetries: 2
    perRetry: {timeout: 300ms}
""")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], hang_rate=1.0)
        started = time.monotonic()
        status, text = await _post(s, gw.url)
        elapsed = time.monotonic() - started
    # Envoy retries a per-try timeout only under 5xx / gateway-error (the defaults lack both).
    assert (status, text) == (504, "upstream request timeout")
    assert 0.25 < elapsed < 5
    [rec] = await gw.access_log(1)
    assert (rec["flag"], rec["attempts"]) == ("UT", 1)


async def test_backend_request_timeout_bounds_each_attempt(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses[:1],
                  timeouts="timeouts: {request: 20s, backendRequest: 300ms}")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], hang_rate=1.0)
        started = time.monotonic()
        status, text = await _post(s, gw.url)
        elapsed = time.monotonic() - started
    assert (status, text) == (504, "upstream request timeout")
    assert elapsed < 5  # the 20 s request timeout did not decide


# -- connect timeout -------------------------------------------------------------------------


@contextlib.contextmanager
def _blackhole() -> Iterator[str]:
    """A 127.0.0.1 address whose connects hang: a listener that never accepts, its backlog
    full, so the kernel drops further SYNs (as a firewalled or unreachable host would)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            filler = socket.socket()
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(("127.0.0.1", port))
            fillers.append(filler)
        time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        server.close()


async def test_connect_timeout_answers_connection_failure_in_time(
        procs: ProcessGroup, tmp_path: Path) -> None:
    with _blackhole() as address:
        gw = _gateway(procs, tmp_path, [address], """\
  timeout:
    tcp: {connectTimeout: 300ms}
""")
        async with aiohttp.ClientSession() as s:
            started = time.monotonic()
            status, text = await _post(s, gw.url)
            elapsed = time.monotonic() - started
    assert (status, text) == (503, RESET + "reset reason: connection failure")
    # The gateway's own default is 10 s: the policy's 300 ms decided.
    assert elapsed < 5
    [rec] = await gw.access_log(1)
    assert rec["flag"] == "UF"


# -- per-endpoint connections ----------------------------------------------------------------


async def test_per_endpoint_max_connections_overflows_without_pending_room(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses[:1], """\
  circuitBreaker:
    maxPendingRequests: 0
    perEndpoint: {maxConnections: 1}
""")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], added_latency=1.0)
        first = asyncio.create_task(_post(s, gw.url))
        await asyncio.sleep(0.3)
        second = await _post(s, gw.url)
        assert (await first)[0] == 200
    assert second == (503, RESET + "reset reason: overflow")


async def test_per_endpoint_max_connections_waits_as_pending_then_goes(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses[:1], """\
  circuitBreaker:
    perEndpoint: {maxConnections: 1}
""")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], added_latency=0.6)
        results = await asyncio.gather(*(_post(s, gw.url) for _ in range(2)))
    assert [status for status, _ in results] == [200, 200]
    durations = sorted(rec["duration_ms"] for rec in await gw.access_log(2))
    # One at a time to the one endpoint: the second waited for the first.
    assert durations[1] > durations[0] + 300


async def test_per_endpoint_max_connections_spreads_concurrent_requests(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses, """\
  circuitBreaker:
    maxPendingRequests: 0
    perEndpoint: {maxConnections: 1}
""")
    async with aiohttp.ClientSession() as s:
        for url in fleet.urls:
            await _faults(s, url, added_latency=0.6)
        results = await asyncio.gather(*(_post(s, gw.url) for _ in range(2)))
    assert [status for status, _ in results] == [200, 200]
    assert {rec["endpoint"] for rec in await gw.access_log(2)} == set(fleet.addresses)


# -- connection reuse ------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _connection_counting_server() -> AsyncIterator[tuple[str, list[int]]]:
    """A model server stand-in that records the client port of every request it answers."""
    ports: list[int] = []

    async def complete(request: web.Request) -> web.Response:
        await request.read()
        peer = request.transport.get_extra_info("peername") if request.transport else None
        ports.append(peer[1] if peer else -1)
        return web.json_response({"id": "cmpl-1", "object": "text_completion",
                                  "choices": [{"index": 0, "text": "ok"}]})

    app = web.Application()
    app.router.add_post("/v1/completions", complete)
    async with serve_app(app) as port:
        yield f"127.0.0.1:{port}", ports


async def _sequential(url: str, count: int, pause: float = 0.0) -> None:
    async with aiohttp.ClientSession() as s:
        for _ in range(count):
            status, _ = await _post(s, url)
            assert status == 200
            await asyncio.sleep(pause)


async def test_max_requests_per_connection_opens_a_new_connection_after_n(
        procs: ProcessGroup, tmp_path: Path) -> None:
    async with _connection_counting_server() as (address, ports):
        plain = _gateway(procs, tmp_path / "plain", [address])
        await _sequential(plain.url, 6)
        assert len(set(ports)) == 1  # keep-alive: one connection serves them all
        ports.clear()
        capped = _gateway(procs, tmp_path / "capped", [address], """\
  circuitBreaker:
    maxRequestsPerConnection: 2
""")
        await _sequential(capped.url, 6)
    assert len(set(ports)) == 3
    assert ports[0] == ports[1] != ports[2] == ports[3] != ports[4] == ports[5]


async def test_connection_idle_timeout_closes_idle_upstream_connections(
        procs: ProcessGroup, tmp_path: Path) -> None:
    async with _connection_counting_server() as (address, ports):
        plain = _gateway(procs, tmp_path / "plain", [address])
        await _sequential(plain.url, 3, pause=0.4)
        assert len(set(ports)) == 1
        ports.clear()
        short = _gateway(procs, tmp_path / "short", [address], """\
  timeout:
    http: {connectionIdleTimeout: 200ms}
""")
        await _sequential(short.url, 3, pause=0.4)
    assert len(set(ports)) == 3

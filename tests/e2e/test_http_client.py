"""The proxy's lean HTTP/1.1 upstream client against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from poolgate.http.client import BodyError, ConnectionSettings, UpstreamFailure, UpstreamPool
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """An aiohttp server in this event loop that records what it saw."""

    def __init__(self) -> None:
        self.peers: list[tuple[str, int]] = []
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []
        self.disconnected = asyncio.Event()
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()

    async def echo(request: web.Request) -> web.StreamResponse:
        peer = request.transport.get_extra_info("peername") if request.transport else None
        srv.peers.append(peer)
        body = await request.read()
        srv.requests.append((request.method, request.path_qs, dict(request.headers), body))
        return web.json_response({"echo": body.decode()}, headers={"X-Seen": "1"})

    async def stream(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await resp.prepare(request)
        try:
            for i in range(int(request.query.get("n", "3"))):
                await resp.write(f"data: {i}\n\n".encode())
                await asyncio.sleep(float(request.query.get("gap", "0.01")))
        except (ConnectionResetError, asyncio.CancelledError):
            srv.disconnected.set()
            raise
        await resp.write_eof()
        return resp

    async def big(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"x" * 3_000_000)

    async def close_now(request: web.Request) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.close()
        await asyncio.sleep(0.05)
        return web.Response()

    app = web.Application()
    app.router.add_route("*", "/echo", echo)
    app.router.add_get("/stream", stream)
    app.router.add_get("/big", big)
    app.router.add_post("/close", close_now)
    runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", srv.port).start()
    try:
        yield srv
    finally:
        await runner.cleanup()


@pytest.fixture
async def pool() -> AsyncIterator[UpstreamPool]:
    p = UpstreamPool(connect_timeout=2.0)
    try:
        yield p
    finally:
        await p.close()


async def test_request_and_keep_alive_reuse(server: Server, pool: UpstreamPool) -> None:
    headers = [("Host", "example.com"), ("Content-Type", "application/json"), ("X-Multi", "a"),
               ("X-Multi", "b")]
    for i in range(3):
        resp = await pool.request(server.address, "POST", f"/echo?i={i}", headers, b"hi")
        assert resp.status == 200
        assert ("X-Seen", "1") in resp.headers
        assert resp.content_type.startswith("application/json")
        assert await resp.read() == b'{"echo": "hi"}'
        resp.release()
    method, path, seen, body = server.requests[-1]
    assert (method, path, body) == ("POST", "/echo?i=2", b"hi")
    assert seen["Host"] == "example.com" and seen["Content-Length"] == "2"
    assert len(set(server.peers)) == 1, "the connection was not reused"


async def test_get_without_body_and_default_host(server: Server, pool: UpstreamPool) -> None:
    resp = await pool.request(server.address, "GET", "/echo", [], b"")
    assert resp.status == 200
    await resp.read()
    resp.release()
    _, _, seen, body = server.requests[-1]
    assert seen["Host"] == server.address and body == b""
    assert "Content-Length" not in seen


async def test_streamed_body_arrives_in_pieces(server: Server, pool: UpstreamPool) -> None:
    resp = await pool.request(server.address, "GET", "/stream?n=4&gap=0.05", [], b"")
    assert resp.content_length is None
    chunks = [c async for c in resp.iter_chunks()]
    assert b"".join(chunks) == b"data: 0\n\ndata: 1\n\ndata: 2\n\ndata: 3\n\n"
    assert len(chunks) >= 3, "the body was buffered instead of streamed"
    assert resp.complete
    resp.release()


async def test_large_body_with_flow_control(server: Server, pool: UpstreamPool) -> None:
    resp = await pool.request(server.address, "GET", "/big", [], b"")
    assert resp.content_length == 3_000_000
    total = 0
    async for chunk in resp.iter_chunks():
        total += len(chunk)
        await asyncio.sleep(0)  # a slow consumer
    assert total == 3_000_000
    resp.release()


async def test_close_mid_stream_disconnects_the_server(server: Server, pool: UpstreamPool) -> None:
    resp = await pool.request(server.address, "GET", "/stream?n=100&gap=0.02", [], b"")
    async for _ in resp.iter_chunks():
        break
    resp.close()
    await asyncio.wait_for(server.disconnected.wait(), 5)


async def test_connect_failure(pool: UpstreamPool) -> None:
    with pytest.raises(UpstreamFailure) as e:
        await pool.request(f"127.0.0.1:{free_port()}", "GET", "/", [], b"")
    assert e.value.reason == "connection failure"


async def test_server_closing_before_the_response(server: Server, pool: UpstreamPool) -> None:
    with pytest.raises(UpstreamFailure) as e:
        await pool.request(server.address, "POST", "/close", [], b"x")
    assert e.value.reason == "connection termination"


async def test_idle_connection_closed_by_the_server_is_replaced(pool: UpstreamPool) -> None:
    """The server answers with keep-alive, then drops the idle connection (uvicorn does after
    5 s): the next request goes out on a new connection instead of failing."""
    port = free_port()
    connections = 0

    async def answer_then_drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.close()

    srv = await asyncio.start_server(answer_then_drop, "127.0.0.1", port)
    try:
        for _ in range(3):
            resp = await pool.request(f"127.0.0.1:{port}", "GET", "/", [], b"")
            assert await resp.read() == b"ok"
            resp.release()
            await asyncio.sleep(0.15)  # the server has dropped the idle connection by now
        assert connections == 3
    finally:
        srv.close()
        await srv.wait_closed()


async def test_body_error_when_the_stream_breaks(pool: UpstreamPool) -> None:
    port = free_port()

    async def broken(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial")
        await writer.drain()
        writer.close()

    srv = await asyncio.start_server(broken, "127.0.0.1", port)
    try:
        resp = await pool.request(f"127.0.0.1:{port}", "GET", "/", [], b"")
        assert resp.status == 200
        with pytest.raises(BodyError):
            await resp.read()
        assert not resp.complete
        resp.release()
    finally:
        srv.close()
        await srv.wait_closed()


async def test_connection_states_show_in_repr(server: Server, pool: UpstreamPool) -> None:
    settings = ConnectionSettings(connect_timeout=2.0, max_requests_per_connection=2)
    resp = await pool.request(server.address, "POST", "/echo", [], b"1", settings)
    [conn] = pool.connections()
    assert repr(conn) == f"<UpstreamConnection {server.address} active requests=1>"
    await resp.read()
    resp.release()
    assert repr(conn) == f"<UpstreamConnection {server.address} idle requests=1>"
    assert repr(pool) == "<UpstreamPool idle=1>"
    resp = await pool.request(server.address, "POST", "/echo", [], b"2", settings)
    assert pool.connections() == [conn]  # reused
    await resp.read()
    resp.release()  # its second request: maxRequestsPerConnection closes it
    assert repr(conn) == f"<UpstreamConnection {server.address} closed requests=2>"
    assert repr(pool) == "<UpstreamPool empty>"
    assert len(set(server.peers)) == 1

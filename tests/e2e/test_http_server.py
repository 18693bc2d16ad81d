"""The gateway's HTTP/1.1 listener (`poolgate.http.server`) against real clients on 127.0.0.1:
aiohttp's client, and raw sockets for what a client library would not send."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import orjson
import pytest

from poolgate.http.server import MAX_HEAD_BYTES, DownstreamRequest, HttpServer
from tests.support.processes import free_port

pytestmark = pytest.mark.e2e

Handler = Callable[[DownstreamRequest], Awaitable[None]]
JSON = [("content-type", "application/json")]


class Listener:
    """An `HttpServer` in this event loop; `handler` may be replaced by a test."""

    def __init__(self) -> None:
        self.port = free_port()
        self.seen: list[DownstreamRequest] = []
        self.cancelled = asyncio.Event()
        self.handler: Handler = self.echo
        self.server = HttpServer(self._dispatch, max_body=1000, keepalive_timeout=0.4,
                                 receive_timeout=0.8)
        self.clients: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _dispatch(self, request: DownstreamRequest) -> None:
        self.seen.append(request)
        try:
            await self.handler(request)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise

    async def echo(self, request: DownstreamRequest) -> None:
        body = orjson.dumps({"method": request.method, "path": request.path,
                             "raw_path": request.raw_path, "query": dict(request.query),
                             "body": request.body.decode(), "too_large": request.body_too_large,
                             "host": request.host, "agent": request.headers.get("User-Agent")})
        await request.respond(200, "OK", [*JSON, ("x-seen", "1"), ("x-seen", "2")], body)

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A raw client connection (closed at the end of the test)."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        self.clients.append(writer)
        return reader, writer


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    srv = Listener()
    await srv.server.start("127.0.0.1", srv.port)
    try:
        yield srv
    finally:
        for writer in srv.clients:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
        await srv.server.close()


async def _response(reader: asyncio.StreamReader) -> tuple[str, dict[str, str], bytes]:
    """One response read off a raw connection (Content-Length framed, or until EOF)."""
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode()
    status, *lines = head.strip().split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    else:
        body = await asyncio.wait_for(reader.read(), 5)
    return status, headers, body


async def test_requests_and_keep_alive_with_aiohttp(listener: Listener) -> None:
    async with aiohttp.ClientSession() as s:
        for i in range(3):
            async with s.post(f"{listener.url}/v1/a%20b?x=1&x=2&y=&z=a%26b", json={"i": i},
                              headers={"User-Agent": "tester"}) as r:
                assert r.status == 200
                assert r.headers.getall("x-seen") == ["1", "2"]
                assert r.headers["server"] == "poolgate" and "GMT" in r.headers["date"]
                got = await r.json()
        assert got == {"method": "POST", "path": "/v1/a b", "raw_path": "/v1/a%20b?x=1&x=2&y=&z=a%26b",
                       "query": {"x": "1", "y": "", "z": "a&b"}, "body": '{"i": 2}',
                       "too_large": False, "host": f"127.0.0.1:{listener.port}",
                       "agent": "tester"}
    # One connection served all three.
    assert len({id(r._conn) for r in listener.seen}) == 1


async def test_pipelined_requests_are_answered_in_order(listener: Listener) -> None:
    async def slow_first(request: DownstreamRequest) -> None:
        if request.path == "/first":
            await asyncio.sleep(0.1)
        await request.respond(200, "OK", [], request.path.encode())

    listener.handler = slow_first
    reader, writer = await listener.connect()
    writer.write(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (await _response(reader))[2] == b"/first"
    assert (await _response(reader))[2] == b"/second"
    writer.close()


async def test_a_chunked_request_body_is_decoded(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n6\r\n world\r\n0\r\nUser-Agent: trailer\r\n\r\n")
    status, _, body = await _response(reader)
    assert status == "HTTP/1.1 200 OK" and orjson.loads(body)["body"] == "hello world"
    # A trailer field is not a request header.
    assert orjson.loads(body)["agent"] is None and "user-agent" not in listener.seen[0].headers
    writer.close()


async def test_expect_100_continue_gets_its_interim_answer(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
    assert await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5) == b"HTTP/1.1 100 Continue\r\n\r\n"
    writer.write(b"hello")
    status, _, body = await _response(reader)
    assert status == "HTTP/1.1 200 OK" and orjson.loads(body)["body"] == "hello"
    writer.close()


@pytest.mark.parametrize("request_bytes", [
    b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"x" * 100,
    b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"3e8\r\n" + b"x" * 1000 + b"\r\n" + b"1\r\nx\r\n",
], ids=["declared", "chunked"])
async def test_an_oversized_body_is_handed_over_marked_and_the_connection_closes(
        listener: Listener, request_bytes: bytes) -> None:
    reader, writer = await listener.connect()
    writer.write(request_bytes)
    status, headers, body = await _response(reader)
    # The handler ran without the body (it answers 413 in the gateway) and the rest of the
    # upload is never read: the connection closes after the answer.
    assert status == "HTTP/1.1 200 OK" and orjson.loads(body)["too_large"] is True
    assert orjson.loads(body)["body"] == ""
    assert headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""
    writer.close()


async def test_an_upload_still_being_sent_does_not_lose_the_early_answer(
        listener: Listener) -> None:
    # The client sends a large body and reads only once it has sent all of it, as an HTTP
    # client does. The server answers after 1000 bytes; it must go on reading (and dropping)
    # the rest: closing at once would reset the connection, failing the client's writes and
    # destroying the unread answer in its receive buffer.
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", listener.port))
    sock.setblocking(False)
    try:
        await loop.sock_sendall(sock, b"POST /big HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 4000000\r\n\r\n")
        for _ in range(100):
            await loop.sock_sendall(sock, b"x" * 40_000)
            await asyncio.sleep(0.002)
        answer = b""
        while chunk := await asyncio.wait_for(loop.sock_recv(sock, 65536), 5):
            answer += chunk
    finally:
        sock.close()
    assert answer.startswith(b"HTTP/1.1 200 OK") and b'"too_large":true' in answer


async def test_a_malformed_request_gets_400_and_the_connection_closes(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
    status, headers, body = await _response(reader)
    assert status == "HTTP/1.1 400 Bad Request" and headers["connection"] == "close"
    error = orjson.loads(body)["error"]
    assert error["code"] == 400 and error["type"] == "BadRequestError"
    assert error["message"].startswith("Malformed HTTP request")
    assert await asyncio.wait_for(reader.read(), 5) == b""
    assert listener.seen == []


async def test_an_oversized_head_gets_431(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * MAX_HEAD_BYTES + b"\r\n\r\n")
    status, _, body = await _response(reader)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert str(MAX_HEAD_BYTES) in orjson.loads(body)["error"]["message"]
    writer.close()


async def _stream(request: DownstreamRequest) -> None:
    await request.start(200, "OK", [("content-type", "text/event-stream")])
    for i in range(3):
        await request.write(f"data: {i}\n\n".encode())
        await asyncio.sleep(0.01)
    await request.end()


async def test_a_body_of_unknown_length_is_chunked_for_http_1_1(listener: Listener) -> None:
    listener.handler = _stream
    async with aiohttp.ClientSession() as s:
        for _ in range(2):  # and the connection is kept
            async with s.get(listener.url) as r:
                assert r.headers["transfer-encoding"] == "chunked"
                assert await r.read() == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    assert len({id(r._conn) for r in listener.seen}) == 1


async def test_http_1_0_gets_its_stream_delimited_by_close(listener: Listener) -> None:
    listener.handler = _stream
    reader, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.0\r\n\r\n")
    status, headers, body = await _response(reader)
    assert status == "HTTP/1.1 200 OK"
    assert "transfer-encoding" not in headers and headers["connection"] == "close"
    assert body == b"data: 0\n\ndata: 1\n\ndata: 2\n\n"
    writer.close()


async def test_http_1_0_keep_alive_is_answered_in_kind(listener: Listener) -> None:
    reader, writer = await listener.connect()
    for _ in range(2):
        writer.write(b"GET /k HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        status, headers, _ = await _response(reader)
        assert status == "HTTP/1.1 200 OK" and headers["connection"] == "keep-alive"
    writer.close()


async def test_connection_close_from_the_client_is_honoured(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"GET /k HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    _, headers, _ = await _response(reader)
    assert headers["connection"] == "close"
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_head_and_204_answers_carry_no_body(listener: Listener) -> None:
    async def answer(request: DownstreamRequest) -> None:
        if request.path == "/empty":
            await request.start(204, "No Content", [])
            await request.write(b"ignored")
            await request.end()
        else:
            await request.respond(200, "OK", JSON, b"", content_length=42)

    listener.handler = answer
    reader, writer = await listener.connect()
    writer.write(b"HEAD /h HTTP/1.1\r\nHost: x\r\n\r\n")
    head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode().lower()
    assert "content-length: 42" in head
    writer.write(b"GET /empty HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\n\r\n")
    for _ in range(2):
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode().lower()
        assert head.startswith("http/1.1 204") and "content-length" not in head
        assert "transfer-encoding" not in head
    writer.close()


async def test_a_client_that_goes_away_cancels_its_request(listener: Listener) -> None:
    started = asyncio.Event()

    async def forever(request: DownstreamRequest) -> None:
        started.set()
        await asyncio.Event().wait()

    listener.handler = forever
    _, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await asyncio.wait_for(started.wait(), 5)
    writer.close()
    await asyncio.wait_for(listener.cancelled.wait(), 5)


async def test_a_failing_handler_answers_500_without_a_traceback(listener: Listener) -> None:
    async def broken(request: DownstreamRequest) -> None:
        raise RuntimeError("secret internals")

    listener.handler = broken
    async with aiohttp.ClientSession() as s, s.get(listener.url) as r:
        assert r.status == 500
        text = await r.text()
    assert "secret" not in text and orjson.loads(text)["error"]["code"] == 500


async def test_a_response_left_unfinished_closes_the_connection(listener: Listener) -> None:
    async def half(request: DownstreamRequest) -> None:
        await request.start(200, "OK", [], content_length=10)
        await request.write(b"12345")

    listener.handler = half
    reader, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    assert b"content-length: 10" in head
    assert await asyncio.wait_for(reader.read(), 5) == b"12345"


async def test_a_large_streamed_body_arrives_whole(listener: Listener) -> None:
    chunk = bytes(range(256)) * 256  # 64 KiB

    async def big(request: DownstreamRequest) -> None:
        await request.start(200, "OK", [])
        for _ in range(80):
            await request.write(chunk)
        await request.end()

    listener.handler = big
    async with aiohttp.ClientSession() as s, s.get(listener.url) as r:
        size = 0
        async for data in r.content.iter_any():
            size += len(data)
            await asyncio.sleep(0)  # a reader slower than the writer
    assert size == 80 * len(chunk)


async def test_stopping_closes_idle_connections_and_ends_busy_ones_after_their_answer(
        listener: Listener) -> None:
    release = asyncio.Event()

    async def held(request: DownstreamRequest) -> None:
        if request.path == "/hold":
            await release.wait()
        await request.respond(200, "OK", [], b"done")

    listener.handler = held
    idle_reader, idle_writer = await listener.connect()
    idle_writer.write(b"GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
    await _response(idle_reader)
    busy_reader, busy_writer = await listener.connect()
    busy_writer.write(b"GET /hold HTTP/1.1\r\nHost: x\r\n\r\n")
    while len(listener.seen) < 2:
        await asyncio.sleep(0.01)
    listener.server.stop_accepting()
    assert await asyncio.wait_for(idle_reader.read(), 5) == b""
    with pytest.raises(OSError):
        await listener.connect()
    release.set()
    _, headers, body = await _response(busy_reader)
    assert body == b"done" and headers["connection"] == "close"
    assert await asyncio.wait_for(busy_reader.read(), 5) == b""


async def test_idle_connections_are_closed_after_the_keep_alive_timeout(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    await _response(reader)
    # keepalive_timeout is 0.4 s here; the sweep runs every 0.1 s.
    assert await asyncio.wait_for(reader.read(), 5) == b""
    # A request that never completes does not keep a connection either.
    reader, writer = await listener.connect()
    writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n")
    assert await asyncio.wait_for(reader.read(), 5) == b""


UPGRADE = (b"Host: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
           b"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n")


@pytest.mark.parametrize("split", [False, True], ids=["one-write", "body-later"])
async def test_an_upgrade_request_is_answered_over_http_1_1_with_its_body(
        listener: Listener, split: bool) -> None:
    # `curl --http2 http://...` asks to switch to h2c; the gateway stays on HTTP/1.1 and reads
    # the body itself (llhttp stops at the head of a request that asks to upgrade).
    reader, writer = await listener.connect()
    head = b"POST /up HTTP/1.1\r\n" + UPGRADE + b"Content-Length: 11\r\n\r\n"
    if split:
        writer.write(head + b"hello")
        await asyncio.sleep(0.05)
        writer.write(b" world")
    else:
        writer.write(head + b"hello world")
    status, headers, body = await _response(reader)
    assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
    assert orjson.loads(body)["path"] == "/up" and orjson.loads(body)["body"] == "hello world"
    assert "upgrade" not in headers
    assert await asyncio.wait_for(reader.read(), 5) == b""


async def test_an_upgrade_request_without_a_body_and_one_with_chunks(listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"GET /ws HTTP/1.1\r\n" + UPGRADE + b"\r\n")
    status, _, body = await _response(reader)
    assert status == "HTTP/1.1 200 OK" and orjson.loads(body)["body"] == ""
    reader, writer = await listener.connect()
    writer.write(b"POST /up HTTP/1.1\r\n" + UPGRADE + b"Transfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n0\r\n\r\n")
    status, _, body = await _response(reader)
    assert status == "HTTP/1.1 400 Bad Request" and b"chunked body" in body


async def test_connection_states_show_in_repr(listener: Listener) -> None:
    release = asyncio.Event()

    async def slow(request: DownstreamRequest) -> None:
        await release.wait()
        await request.respond(200, "OK", JSON, b"{}")

    listener.handler = slow
    reader, writer = await listener.connect()
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    async with asyncio.timeout(5):
        while not any(repr(c).startswith("<Connection active")
                      for c in listener.server.connections):
            await asyncio.sleep(0.01)
    [conn] = listener.server.connections
    release.set()
    await _response(reader)
    assert repr(conn) == "<Connection idle queued=0>"
    writer.close()
    async with asyncio.timeout(5):
        while repr(conn) != "<Connection closed queued=0>":
            await asyncio.sleep(0.01)


async def test_a_body_trickled_past_the_receive_timeout_gets_408_and_the_connection_closes(
        listener: Listener) -> None:
    reader, writer = await listener.connect()
    writer.write(b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n")
    await writer.drain()
    started = asyncio.get_running_loop().time()

    async def trickle() -> None:
        with contextlib.suppress(OSError):
            for _ in range(100):  # one byte every 0.1 s: never idle, never complete in time
                writer.write(b"x")
                await writer.drain()
                await asyncio.sleep(0.1)

    sender = asyncio.create_task(trickle())
    try:
        status, _, body = await _response(reader)
    finally:
        sender.cancel()
    elapsed = asyncio.get_running_loop().time() - started
    assert status == "HTTP/1.1 408 Request Timeout"
    assert b"did not arrive whole within 0.8 s" in body
    assert 0.7 < elapsed < 5
    assert listener.seen == []  # the handler never ran


async def test_too_many_header_fields_get_431(listener: Listener) -> None:
    reader, writer = await listener.connect()
    fields = b"".join(b"x-f%d: v\r\n" % i for i in range(101))
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    await writer.drain()
    status, _, body = await _response(reader)
    assert status == "HTTP/1.1 431 Request Header Fields Too Large"
    assert b"more than 100 header fields" in body


async def test_garbage_after_a_pipelined_request_lets_its_answer_finish_then_closes(
        listener: Listener) -> None:
    release = asyncio.Event()

    async def slow(request: DownstreamRequest) -> None:
        await release.wait()
        await request.respond(200, "OK", JSON, b"{}")

    listener.handler = slow
    reader, writer = await listener.connect()
    writer.write(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\x00\x01 not http\r\n\r\n")
    await writer.drain()
    await asyncio.sleep(0.1)  # the garbage is parsed while /a is still being answered
    release.set()
    status, _, body = await _response(reader)
    assert (status, body) == ("HTTP/1.1 200 OK", b"{}")
    assert await asyncio.wait_for(reader.read(), 5) == b""  # then closed, nothing more

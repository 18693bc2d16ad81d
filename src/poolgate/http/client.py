"""A lean HTTP/1.1 client with keep-alive connections per endpoint (proxy upstreams, scrapes).

The gateway sends every request to a model server it knows (`host:port`), over plain HTTP/1.1,
and relays the body untouched. A general-purpose client pays per request for URL parsing, cookie
jars, redirects, auto headers and payload registries; this one writes the request in one call and
parses the response with llhttp (httptools). Bodies are delivered as they arrive, with flow
control: reading pauses while the consumer (the client connection) is behind.
"""

from __future__ import annotations

import asyncio
import collections
import enum
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol, cast

import httptools

# Stop reading from the model server while this much body is buffered and not yet relayed.
_HIGH_WATER = 256 * 1024
_LOW_WATER = 64 * 1024
# uvicorn (vLLM's server) closes idle keep-alive connections after 5 s: never reuse one that old.
_MAX_IDLE = 4.0


@dataclass(frozen=True, slots=True)
class ConnectionSettings:
    """How one backend cluster uses its upstream connections (Envoy cluster settings).

    - `connect_timeout`: establishing a TCP connection (`timeout.tcp.connectTimeout`);
    - `max_requests_per_connection`: a connection is closed after serving this many requests
      (`circuitBreaker.maxRequestsPerConnection`; None: no limit);
    - `idle_timeout`: an idle connection is not reused (and is closed) once idle this long
      (`timeout.http.connectionIdleTimeout`); never longer than 4 s, below the 5 s after which
      uvicorn, vLLM's server, closes idle connections itself.
    """

    connect_timeout: float
    max_requests_per_connection: int | None = None
    idle_timeout: float = _MAX_IDLE

    def __post_init__(self) -> None:
        if not self.connect_timeout > 0:
            raise ValueError(f"connect timeout must be > 0 s, got {self.connect_timeout!r}")
        if self.max_requests_per_connection is not None and self.max_requests_per_connection < 1:
            raise ValueError("max requests per connection must be >= 1 when set")
        object.__setattr__(self, "idle_timeout", min(self.idle_timeout, _MAX_IDLE))



class ConnectionState(enum.Enum):
    """Where an upstream connection stands (shown in its repr)."""

    NEW = "new"  # connecting, or connected and not used yet
    ACTIVE = "active"  # a request is in flight on it
    IDLE = "idle"  # in the pool, ready for the next request
    CLOSED = "closed"


class UpstreamFailure(Exception):
    """An attempt that failed before any response byte reached the client (so it may be retried).

    `reason` is Envoy's reset reason: `connection failure`, `connection termination`,
    `protocol error`.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class BodyError(Exception):
    """The upstream broke off after the response started (reset, protocol error)."""


class BodyTooLarge(Exception):
    """A body read with a size limit went past it (the connection was closed)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class ResponseSource(Protocol):
    """What an `UpstreamResponse` needs of the connection it arrives on
    (`UpstreamConnection`)."""

    loop: asyncio.AbstractEventLoop

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def response_released(self, response: UpstreamResponse) -> None: ...

    def close(self) -> None: ...


class UpstreamResponse:
    """A response being received: status and headers now, the body as it arrives."""

    __slots__ = (
        "_chunks", "_conn", "_done", "_error", "_size", "_waiter", "connection",
        "content_length", "content_type", "headers", "reason", "status",
    )

    def __init__(self, conn: ResponseSource) -> None:
        self._conn = conn
        self.status = 0
        self.reason = ""
        self.headers: list[tuple[str, str]] = []
        self.content_length: int | None = None
        self.content_type = ""
        self.connection: str | None = None  # the `Connection` field's value, if any
        self._chunks: collections.deque[bytes] = collections.deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None

    @property
    def complete(self) -> bool:
        """The whole body was received."""
        return self._done and self._error is None

    # -- fed by the connection -------------------------------------------------------------------

    def _feed(self, data: bytes) -> None:
        if not data:
            return  # (`next_chunk` answers b"" only at the end)
        self._chunks.append(data)
        self._size += len(data)
        if self._size > _HIGH_WATER:
            self._conn.pause_reading()
        self._wake()

    def _finish(self, error: BaseException | None = None) -> None:
        if self._done:
            return
        self._done = True
        self._error = error
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- read by the relay -----------------------------------------------------------------------

    async def _wait(self) -> None:
        self._waiter = self._conn.loop.create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def _take(self) -> bytes:
        data = self._chunks.popleft() if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        self._size = 0
        self._conn.resume_reading()
        return data

    def received(self) -> bytes | None:
        """The whole body when all of it has arrived already (None while more is to come, or
        when it broke off): what `read()` would return, without waiting."""
        if not self._done or self._error is not None:
            return None
        chunks = self._chunks
        if not chunks:
            return b""
        return self._take()

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body; with `limit`, raises `BodyTooLarge` (and closes the connection) as
        soon as more than `limit` bytes arrived, so an oversized body is never held in full."""
        # Take what arrives as it arrives: waiting for the end with reading paused at the high
        # water mark would never see the end of a body larger than it.
        parts: list[bytes] = []
        size = 0
        while True:
            if self._chunks:
                data = self._take()
                size += len(data)
                if limit is not None and size > limit:
                    self.close()
                    raise BodyTooLarge(limit)
                parts.append(data)
                continue
            if self._done:
                if self._error is not None:
                    raise BodyError(str(self._error)) from self._error
                return parts[0] if len(parts) == 1 else b"".join(parts)
            await self._wait()

    async def next_chunk(self) -> bytes:
        """The body bytes that arrived since the last call (what is buffered, joined into one
        chunk), waiting for some when there are none yet; b"" once the body is over. Raises
        `BodyError` when the upstream broke off."""
        while True:
            if self._chunks:
                return self._take()
            if self._done:
                if self._error is not None:
                    raise BodyError(str(self._error)) from self._error
                return b""
            await self._wait()

    def iter_chunks(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive (what is buffered is joined into one chunk)."""
        return _Chunks(self)

    def release(self) -> None:
        """Done with the response: the connection goes back to the pool if it can be reused,
        otherwise it is closed (a body not read to the end makes the connection unusable)."""
        self._conn.response_released(self)

    def close(self) -> None:
        """Abandon the response and close its connection: the model server sees the disconnect."""
        self._conn.close()


class _Chunks:
    """`UpstreamResponse.iter_chunks()`: an async iterator over `next_chunk()` (a class, not an
    async generator, so that the module compiles with mypyc)."""

    __slots__ = ("_response",)

    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    def __aiter__(self) -> _Chunks:
        return self

    async def __anext__(self) -> bytes:
        chunk = await self._response.next_chunk()
        if not chunk:
            raise StopAsyncIteration
        return chunk


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive connection to a model server; one request at a time."""

    def __init__(self, pool: UpstreamPool, address: str, loop: asyncio.AbstractEventLoop) -> None:
        self.pool = pool
        self.address = address
        # Kept: on Python 3.11 each asyncio.get_running_loop() costs a getpid() system call.
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.idle_since = 0.0
        self.state = ConnectionState.NEW
        self.requests = 0  # requests sent on this connection
        self.max_requests: int | None = None  # from the settings of the latest request
        self._parser = httptools.HttpResponseParser(self)
        self._response: UpstreamResponse | None = None
        self._headers_ready: asyncio.Future[UpstreamResponse] | None = None
        self._keep_alive = False
        self._chunked = False
        self._closed = False
        self._paused = False

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as e:
            self._fail(UpstreamFailure("protocol error", str(e)))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self.state = ConnectionState.CLOSED
        self.pool.forget(self)
        response = self._response
        if response is not None and response.status and not response._done:
            # A body without a length ends when the connection does (a chunked one has its own
            # end marker, so a close before it is a break).
            if (response.content_length is None and not self._chunked and exc is None
                    and not self._keep_alive):
                response._finish()
            else:
                response._finish(exc or ConnectionResetError("the model server closed the connection"))
        self._fail(UpstreamFailure("connection termination", str(exc) if exc else "closed before the response"))

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_status(self, status: bytes) -> None:
        if self._response is not None:
            self._response.reason = status.decode("utf-8", "surrogateescape")

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._response is not None:
            self._response.headers.append((name.decode("utf-8", "surrogateescape"),
                                           value.decode("utf-8", "surrogateescape")))

    def on_headers_complete(self) -> None:
        response = self._response
        if response is None:
            return
        response.status = self._parser.get_status_code()
        self._keep_alive = self._parser.should_keep_alive()
        self._chunked = False
        for name, value in response.headers:
            low = name.lower()
            if low == "content-length":
                try:
                    response.content_length = int(value)
                except ValueError:
                    response.content_length = None
            elif low == "content-type":
                response.content_type = value
            elif low == "transfer-encoding":
                self._chunked = "chunked" in value.lower()
            elif low == "connection" and response.connection is None:
                response.connection = value
        waiter = self._headers_ready
        if waiter is not None and not waiter.done():
            waiter.set_result(response)

    def on_body(self, body: bytes) -> None:
        if self._response is not None:
            self._response._feed(body)

    def on_message_complete(self) -> None:
        if self._response is not None:
            self._response._finish()

    # -- use -------------------------------------------------------------------------------------

    async def send(self, head: bytes, body: bytes,
                   settings: ConnectionSettings) -> UpstreamResponse:
        """Write the request and wait for the response headers."""
        assert self.transport is not None
        self.state = ConnectionState.ACTIVE
        self.requests += 1
        self.max_requests = settings.max_requests_per_connection
        self._response = UpstreamResponse(self)
        self._headers_ready = self.loop.create_future()
        self.transport.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            self.transport.write(body)
        try:
            return await self._headers_ready
        except asyncio.CancelledError:
            # Given up (timeout, caller gone) before the answer: the request is still in flight on
            # this connection, so it can never be reused; closing it also tells the server.
            self.close()
            raise
        finally:
            self._headers_ready = None

    def _fail(self, error: UpstreamFailure) -> None:
        waiter = self._headers_ready
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)

    def pause_reading(self) -> None:
        if not self._paused and self.transport is not None and not self._closed:
            self._paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self._paused and self.transport is not None and not self._closed:
            self._paused = False
            self.transport.resume_reading()

    def response_released(self, response: UpstreamResponse) -> None:
        if response is not self._response:
            return
        self._response = None
        spent = self.max_requests is not None and self.requests >= self.max_requests
        if response.complete and self._keep_alive and not self._closed and not spent:
            self.resume_reading()
            self.state = ConnectionState.IDLE
            self.pool.put_idle(self)
        else:
            self.close()

    def close(self) -> None:
        self._response = None
        self.state = ConnectionState.CLOSED
        if not self._closed:
            self._closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    @property
    def usable(self) -> bool:
        return not self._closed and self.transport is not None and not self.transport.is_closing()

    def __repr__(self) -> str:
        return f"<UpstreamConnection {self.address} {self.state.value} requests={self.requests}>"


class Upstreams(Protocol):
    """Where the gateway sends its requests (`UpstreamPool`)."""

    async def request(self, address: str, method: str, path: str,
                      headers: Sequence[tuple[str, str]], body: bytes,
                      settings: ConnectionSettings | None = None) -> UpstreamResponse: ...

    async def close(self) -> None: ...


class UpstreamPool:
    """Keep-alive connections to every endpoint, reused most-recently-idle first."""

    def __init__(self, connect_timeout: float) -> None:
        # The default for requests sent without their cluster's settings (metrics scrapes).
        self.settings = ConnectionSettings(connect_timeout=connect_timeout)
        self._idle: dict[str, list[UpstreamConnection]] = {}
        self._all: set[UpstreamConnection] = set()

    async def request(self, address: str, method: str, path: str,
                      headers: Sequence[tuple[str, str]], body: bytes,
                      settings: ConnectionSettings | None = None) -> UpstreamResponse:
        """Send a request to `address` (`host:port`) and return once its headers arrived.

        Raises `UpstreamFailure` when no response started (connect refused, reset, bad bytes).
        A request that fails on a reused idle connection before any response byte is sent again
        once on a new connection: the model server had closed the idle connection.
        """
        settings = settings or self.settings
        head = _request_head(method, path, address, headers, len(body))
        conn = self._idle_connection(address, settings.idle_timeout)
        if conn is not None:
            try:
                return await conn.send(head, body, settings)
            except UpstreamFailure as e:
                if e.reason != "connection termination":
                    raise
        conn = await self._connect(address, settings.connect_timeout)
        return await conn.send(head, body, settings)

    def _idle_connection(self, address: str, max_idle: float) -> UpstreamConnection | None:
        idle = self._idle.get(address)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.usable and now - conn.idle_since < max_idle:
                return conn
            conn.close()
        return None

    async def _connect(self, address: str, timeout: float) -> UpstreamConnection:
        host, _, port = address.rpartition(":")
        if host.startswith("["):
            host = host[1:-1]
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(
                    lambda: UpstreamConnection(self, address, loop), host, int(port))
        except TimeoutError:
            raise UpstreamFailure("connection failure", f"connect to {address} timed out") from None
        except OSError as e:
            raise UpstreamFailure("connection failure", f"{address}: {e.strerror or e}") from None
        self._all.add(conn)
        return conn

    def put_idle(self, conn: UpstreamConnection) -> None:
        conn.idle_since = time.monotonic()
        self._idle.setdefault(conn.address, []).append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        self._all.discard(conn)
        idle = self._idle.get(conn.address)
        if idle and conn in idle:
            idle.remove(conn)

    def connections(self) -> list[UpstreamConnection]:
        """Every open connection (for tests and the status page)."""
        return list(self._all)

    def __repr__(self) -> str:
        counts = collections.Counter(c.state.value for c in self._all)
        states = " ".join(f"{state}={n}" for state, n in sorted(counts.items()))
        return f"<UpstreamPool {states or 'empty'}>"

    async def close(self) -> None:
        """Close every connection."""
        for conn in list(self._all):
            conn.close()
        self._idle.clear()
        self._all.clear()


def _request_head(method: str, path: str, address: str, headers: Sequence[tuple[str, str]],
                  body_length: int) -> bytes:
    lines = [f"{method} {path} HTTP/1.1"]
    has_host = False
    for name, value in headers:
        if not has_host and name.lower() == "host":
            has_host = True
        lines.append(f"{name}: {value}")
    if not has_host:
        lines.append(f"Host: {address}")
    if body_length or method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {body_length}")
    lines.append("\r\n")
    # aiohttp decodes request headers as UTF-8 with surrogateescape: encode the same way back.
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")

"""The gateway's listener: HTTP/1.1 for clients, parsed by llhttp (httptools) on asyncio.Protocol.

A proxy's listener needs little of a web framework: the request line, the headers, the body, and
a way to send a response head and then bytes as they come. Measured on the overhead benchmark,
aiohttp's server spent about a third of the gateway's CPU per request on request objects,
multidicts, response objects and their preparation; this server does the same work in a few
allocations (docs/gateway.md, "Where the time goes").

What it does, per connection:
- requests are handled one at a time, in order (pipelined requests wait their turn); the handler
  starts once the whole body is in (the gateway needs all of it to route on), except when the
  body is over `max_body`: then it starts at once with `body_too_large` set, and the connection
  closes after the response (lingering: what the client still sends is read and dropped for a
  while, so it reads the answer instead of a reset), so an oversized upload is never held;
- keep-alive as HTTP/1.1 and HTTP/1.0 define it; `Connection: close` is honoured both ways;
- responses are framed by Content-Length when the length is known, else chunked (HTTP/1.1) or by
  closing the connection (HTTP/1.0); HEAD, 1xx, 204 and 304 answers carry no body;
- `Expect: 100-continue` gets its interim answer when the body is waited for;
- the handler is cancelled when the client disconnects (the upstream request is then abandoned,
  which is how a model server learns to stop generating);
- malformed requests get 400, and so do requests HTTP/1.1 forbids a server to act on: no `Host`
  (HTTP/1.1), two `Host` fields; oversized heads get 431 (Envoy's limits: 60 KiB, 100 header
  fields); all in the OpenAI error shape, and the connection closes (lingering as above);
- connections idle longer than `keepalive_timeout` are closed by a sweep, and a request still
  arriving `receive_timeout` after its first byte (a body trickled byte by byte) gets 408 and
  its connection closes, so the request path arms no timers;
- writes wait while the client is slow to read (transport flow control).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import email.utils
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import cast, overload
from urllib.parse import parse_qsl, unquote

import httptools

from poolgate.core.errors import openai_error_body

log = logging.getLogger("poolgate.server")

# Envoy's default `max_request_headers_kb` (60 KiB): request line and headers together.
MAX_HEAD_BYTES = 60 * 1024
# Envoy's default `max_request_headers_count`.
MAX_HEADER_COUNT = 100
KEEPALIVE_TIMEOUT = 75.0
# The longest a request may take to arrive whole (head and body), however steadily it trickles.
RECEIVE_TIMEOUT = 75.0
# Pipelined requests held per connection before reading pauses.
_MAX_QUEUED = 16
# How long a connection answered before its request was read whole keeps reading (and dropping)
# what the client still sends before it is closed.
_LINGER_SECONDS = 2.0
_SERVER = "poolgate"
_NO_BODY_STATUS = frozenset({204, 304})

Handler = Callable[["DownstreamRequest"], Awaitable[None]]


class RequestHeaders(Mapping[str, str]):
    """A request's headers: looked up case-insensitively (first value of a name), iterated in
    the order received with their original names (`raw`), repeated names kept."""

    __slots__ = ("_first", "raw")

    def __init__(self, raw: list[tuple[str, str]], first: dict[str, str]) -> None:
        self.raw = raw
        self._first = first

    def __getitem__(self, name: str) -> str:
        return self._first[name.lower()]

    @overload  # type: ignore[override]
    def get(self, name: str) -> str | None: ...
    @overload
    def get(self, name: str, default: str) -> str: ...

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._first.get(name.lower(), default)

    def getall(self, name: str) -> list[str]:
        """Every value of `name`, in order."""
        low = name.lower()
        return [v for n, v in self.raw if n.lower() == low]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def __len__(self) -> int:
        return len(self._first)


_EMPTY_QUERY: Mapping[str, str] = {}
_REASONS = {s.value: s.phrase for s in HTTPStatus}


def reason_phrase(status: int) -> str:
    """The standard reason phrase of a status code ('' for codes without one)."""
    return _REASONS.get(status, "")


class DownstreamRequest:
    """One client request (complete, body included) and the way to answer it.

    Answer with `respond()` (a whole response in one write), or `start()`, `write()`... `end()`
    for a body relayed as it comes; `abort()` drops the connection (a body that cannot be
    finished). `status` is what was sent (0: nothing yet).
    """

    __slots__ = (
        "_chunked", "_conn", "_finished", "_no_body", "_query", "body", "body_too_large",
        "headers", "keep_alive", "method", "path", "query_string", "raw_path", "status",
        "version",
    )

    def __init__(self, conn: _Connection, method: str, raw_path: str, version: str,
                 headers: RequestHeaders, keep_alive: bool) -> None:
        self._conn = conn
        self.method = method
        self.raw_path = raw_path
        self.version = version
        self.headers = headers
        self.keep_alive = keep_alive
        target, _, self.query_string = raw_path.partition("?")
        if target[:1] != "/" and "://" in target:
            # Absolute form (a client that takes us for a forward proxy): route on the path.
            target = "/" + target.split("://", 1)[1].partition("/")[2]
        self.path = unquote(target) if "%" in target else target
        self._query: Mapping[str, str] | None = None if self.query_string else _EMPTY_QUERY
        self.body = b""
        self.body_too_large = False
        self.status = 0
        self._chunked = False
        self._no_body = False
        self._finished = False

    @property
    def client_address(self) -> str:
        """The client's IP address ('' when unknown)."""
        return self._conn.peer

    @property
    def host(self) -> str:
        """The Host header ('' when absent)."""
        return self.headers.get("host") or ""

    @property
    def query(self) -> Mapping[str, str]:
        """Query parameters (first value of a name), parsed on first use."""
        query = self._query
        if query is None:
            query = {}
            for name, value in parse_qsl(self.query_string, keep_blank_values=True):
                query.setdefault(name, value)
            self._query = query
        return query

    @property
    def started(self) -> bool:
        """The response head was sent."""
        return self.status != 0

    @property
    def finished(self) -> bool:
        """The whole response was sent."""
        return self._finished

    # -- answering -------------------------------------------------------------------------------

    async def respond(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                      body: bytes, content_length: int | None = None) -> None:
        """Send a whole response. `content_length` overrides the body's length in the head (a
        HEAD request's answer states the length of a body it does not carry)."""
        if self.status:
            raise RuntimeError("the response was already started")
        conn = self._conn
        self.status = status
        self._finished = True
        bodiless = _bodiless(status)
        no_body = bodiless or self.method == "HEAD"
        if bodiless:
            framing = ""
        else:
            framing = f"content-length: {len(body) if content_length is None else content_length}\r\n"
        head = self._head(status, reason, headers, framing)
        if conn.closed:
            return
        conn.write(head if no_body or not body else head + body)
        if conn.write_paused:
            await conn.drain()

    async def start(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                    content_length: int | None = None) -> None:
        """Send the response head; the body follows with `write()` and `end()`."""
        if self.status:
            raise RuntimeError("the response was already started")
        self.status = status
        if self.method == "HEAD" or _bodiless(status):
            self._no_body = True
            framing = (f"content-length: {content_length}\r\n"
                       if content_length is not None and self.method == "HEAD" else "")
        elif content_length is not None:
            framing = f"content-length: {content_length}\r\n"
        elif self.version == "1.1":
            self._chunked = True
            framing = "transfer-encoding: chunked\r\n"
        else:
            # HTTP/1.0 has no chunks: the end of the connection ends the body.
            self.keep_alive = False
            framing = ""
        conn = self._conn
        if conn.closed:
            return
        conn.write(self._head(status, reason, headers, framing))
        if conn.write_paused:
            await conn.drain()

    async def write(self, data: bytes) -> None:
        """Send body bytes (after `start()`); waits while the client is behind."""
        conn = self._conn
        if self._no_body or not data or conn.closed:
            return
        if self._chunked:
            data = b"%x\r\n%b\r\n" % (len(data), data)
        conn.write(data)
        if conn.write_paused:
            await conn.drain()

    async def end(self) -> None:
        """Finish the body started with `start()`."""
        if self._finished:
            return
        self._finished = True
        conn = self._conn
        if self._chunked and not conn.closed:
            conn.write(b"0\r\n\r\n")
            if conn.write_paused:
                await conn.drain()

    def abort(self) -> None:
        """Close the client connection now: the response cannot be completed."""
        self.keep_alive = False
        self._conn.close()

    def _head(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
              framing: str) -> bytes:
        conn = self._conn
        if not self.keep_alive or conn.server.draining:
            self.keep_alive = False
            connection = "connection: close\r\n"
        elif self.version == "1.0":
            connection = "connection: keep-alive\r\n"
        else:
            connection = ""
        lines = "".join([f"{name}: {value}\r\n" for name, value in headers])
        text = (f"HTTP/1.1 {status} {reason}\r\n{lines}{framing}{connection}"
                f"date: {_http_date()}\r\nserver: {_SERVER}\r\n\r\n")
        # Header values were decoded as UTF-8 with surrogateescape: the same encoding restores
        # the upstream's bytes exactly.
        return text.encode("utf-8", "surrogateescape")


def _bodiless(status: int) -> bool:
    """1xx, 204 and 304 answers never carry a body, nor a length for one."""
    return status < 200 or status in _NO_BODY_STATUS


_date_cache: tuple[int, str] = (0, "")


def _check_host(version: str, first: Mapping[str, str]) -> None:
    """An HTTP/1.1 request without a Host field is refused (RFC 9112 3.2). (A request target of
    no known form never gets here: llhttp refuses it.)"""
    if version == "1.1" and "host" not in first:
        raise _Refused(400, "Bad Request", "An HTTP/1.1 request must have a Host header field.")


def _http_date() -> str:
    """The current time as an HTTP date, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _error_body(status: int, message: str) -> bytes:
    kind = "BadRequestError" if status < 500 else "InternalServerError"
    return openai_error_body(message, kind, status)


class _Refused(Exception):
    """A request the listener answers itself (raised from a parser callback)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class _HeadTooLarge(Exception):
    pass


class _UpgradeWithChunks(Exception):
    pass


class ConnectionState(enum.Enum):
    """Where a client connection stands (shown in its repr)."""

    IDLE = "idle"  # open, no request being answered or queued
    ACTIVE = "active"  # a request is being answered (others may be queued behind it)
    LINGERING = "lingering"  # answered early: reading and dropping input before closing
    CLOSED = "closed"


class _Connection(asyncio.Protocol):
    """One client connection: parses requests and runs the handler for each, in order."""

    __slots__ = (
        "_body", "_body_size", "_close_after", "_first", "_head_size", "_headers",
        "_ignore_input", "_lingering",
        "_parser", "_queue", "_reading_paused", "_request", "_task", "_upgrade", "_upgrade_left",
        "_url", "_write_waiter", "closed", "idle_since", "loop", "peer", "receiving_since",
        "server", "transport", "write_paused",
    )

    def __init__(self, server: HttpServer, loop: asyncio.AbstractEventLoop) -> None:
        self.server = server
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.write_paused = False
        self._write_waiter: asyncio.Future[None] | None = None
        self.idle_since = loop.time()
        self.receiving_since: float | None = None  # loop time a request's first byte came
        self.peer = ""  # the client's IP address
        self._parser = httptools.HttpRequestParser(self)
        self._queue: collections.deque[DownstreamRequest] = collections.deque()
        self._task: asyncio.Task[None] | None = None
        self._reading_paused = False
        self._lingering = False
        # A request that asked to upgrade: llhttp leaves its body to us (`_upgrade_left` bytes).
        self._upgrade: DownstreamRequest | None = None
        self._upgrade_left = 0
        self._ignore_input = False
        self._close_after = False  # close once the request being answered is done
        # The request being parsed.
        self._request: DownstreamRequest | None = None
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._first: dict[str, str] = {}
        self._head_size = 0
        self._body: list[bytes] = []
        self._body_size = 0

    # -- asyncio.Protocol ------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.peer = peer[0] if isinstance(peer, tuple) and peer else ""
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed or self._lingering:
            return  # (lingering: what the client still sends is read and dropped)
        if self._upgrade is not None:
            self._upgrade_body(data)
            return
        if self._ignore_input:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            # The request asked to switch protocols (`Upgrade: h2c` from `curl --http2`, a
            # websocket), which the gateway does not do: it is answered over HTTP/1.1 and the
            # connection closes after it. llhttp stops at the end of the head; its body, if any,
            # is read here.
            self._ignore_input = True
            rest = data[e.args[0]:]
            if self._upgrading() is not None and rest:
                self._upgrade_body(rest)
        except httptools.HttpParserCallbackError as e:
            # An exception from one of the callbacks below, as its context.
            refused = e.__context__
            if isinstance(refused, _Refused):
                self._reject(refused.status, refused.reason, refused.message)
            elif isinstance(refused, _HeadTooLarge):
                self._reject(431, "Request Header Fields Too Large",
                             f"The request line and headers are larger than {MAX_HEAD_BYTES} bytes.")
            elif isinstance(e.__context__, _UpgradeWithChunks):
                self._reject(400, "Bad Request", "A request that asks to upgrade the connection "
                                                 "cannot have a chunked body.")
            else:
                log.error("error parsing a request", exc_info=e.__context__ or e)
                self._reject(500, "Internal Server Error",
                             "Internal gateway error; see the gateway log.")
        except httptools.HttpParserError as e:
            self._reject(400, "Bad Request", f"Malformed HTTP request: {e}.")

    def eof_received(self) -> bool | None:
        # A client that stops sending has gone (clients do not half-close HTTP/1.1
        # connections): close, which cancels the request in progress. While lingering, this is
        # the end of what the client had to send.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self._queue.clear()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.cancel()

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        waiter = self._write_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- httptools callbacks ---------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self.receiving_since = self.loop.time()
        self._url = b""
        self._headers = []
        self._first = {}
        self._head_size = 0
        self._body = []
        self._body_size = 0
        self._request = None

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge()

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._request is not None:
            return  # a trailer field after a chunked body: not a request header
        self._head_size += len(name) + len(value) + 4
        if self._head_size > MAX_HEAD_BYTES:
            raise _HeadTooLarge()
        if len(self._headers) >= MAX_HEADER_COUNT:
            raise _Refused(431, "Request Header Fields Too Large",
                           f"The request has more than {MAX_HEADER_COUNT} header fields.")
        key = name.decode("utf-8", "surrogateescape")
        text = value.decode("utf-8", "surrogateescape")
        self._headers.append((key, text))
        low = key.lower()
        if low == "host" and "host" in self._first:
            raise _Refused(400, "Bad Request", "The request has more than one Host header field.")
        self._first.setdefault(low, text)

    def on_headers_complete(self) -> None:
        parser = self._parser
        _check_host(parser.get_http_version(), self._first)
        request = DownstreamRequest(
            self, parser.get_method().decode("ascii"),
            self._url.decode("utf-8", "surrogateescape"), parser.get_http_version(),
            RequestHeaders(self._headers, self._first), parser.should_keep_alive())
        self._request = request
        self.idle_since = self.loop.time()
        length = self._first.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.server.max_body:
            self._too_large(request)
            return
        if parser.should_upgrade():
            request.keep_alive = False
            if "chunked" in self._first.get("transfer-encoding", "").lower():
                raise _UpgradeWithChunks()
            self._upgrade = request
            self._upgrade_left = int(length) if length is not None and length.isdigit() else 0
        if (request.version == "1.1" and self.transport is not None
                and self._first.get("expect", "").lower() == "100-continue"):
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        request = self._request
        if request is None or request.body_too_large:
            return
        self.idle_since = self.loop.time()  # a slow upload is not an idle connection
        self._body_size += len(body)
        if self._body_size > self.server.max_body:
            self._body = []
            self._too_large(request)
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        self.receiving_since = None
        request = self._request
        self._request = None
        if request is None or request.body_too_large:
            return  # already handed over when the body went over the limit
        if request is self._upgrade:
            if self._upgrade_left:
                return  # its body follows (see `_upgrade_body`)
            self._upgrade = None
        body = self._body
        if body:
            request.body = body[0] if len(body) == 1 else b"".join(body)
            self._body = []
        self._enqueue(request)

    def _upgrading(self) -> DownstreamRequest | None:
        """The request that asked to upgrade, if its body is still to come. (A method, so that
        after `feed_data`, whose callbacks set it, it is read again rather than taken as
        narrowed by a check made before: compiled with mypyc, that would fail.)"""
        return self._upgrade

    def _upgrade_body(self, data: bytes) -> None:
        """Body bytes of a request that asked to upgrade (llhttp does not read them)."""
        request = self._upgrade
        assert request is not None
        take = data[:self._upgrade_left]
        self._upgrade_left -= len(take)
        self._body.append(take)
        if self._upgrade_left == 0:
            self._upgrade = None
            self._ignore_input = True
            request.body = b"".join(self._body)
            self._body = []
            self._enqueue(request)

    # -- running requests ------------------------------------------------------------------------

    def _too_large(self, request: DownstreamRequest) -> None:
        """Hand the request over now, marked, and stop taking requests from this connection."""
        self.receiving_since = None
        request.body_too_large = True
        request.keep_alive = False
        self._enqueue(request)

    def _enqueue(self, request: DownstreamRequest) -> None:
        if self._task is None:
            self._task = self.loop.create_task(self._run(request))
            return
        self._queue.append(request)
        if len(self._queue) >= _MAX_QUEUED and not self._reading_paused:
            # Enough pipelined requests: stop reading until they are answered.
            assert self.transport is not None
            self._reading_paused = True
            self.transport.pause_reading()

    async def _run(self, request: DownstreamRequest) -> None:
        try:
            await self.server.handler(request)
        except asyncio.CancelledError:
            return  # the client went away
        except Exception:
            # Without the query string: it may carry a credential (an API key, a token).
            log.exception("unexpected error serving %s %s", request.method,
                          request.raw_path.partition("?")[0])
            if not request.started and not self.closed:
                request.keep_alive = False
                await request.respond(500, "Internal Server Error",
                                      [("content-type", "application/json")],
                                      _error_body(500, "Internal gateway error; see the gateway log."))
        finally:
            self._task = None
        self._after(request)

    def _after(self, request: DownstreamRequest) -> None:
        """A request is done: go on with the next one, or close."""
        if self.closed:
            return
        if self._close_after:
            self.close()
            return
        if not request.finished:
            if not request.started:
                log.error("no response was sent for %s %s", request.method,
                          request.raw_path.partition("?")[0])
            self.close()
            return
        if not request.keep_alive:
            if request.body_too_large:
                self._linger()  # the client may still be sending the body
            else:
                self.close()
            return
        if self._queue:
            self._task = self.loop.create_task(self._run(self._queue.popleft()))
            if self._reading_paused and len(self._queue) < _MAX_QUEUED:
                assert self.transport is not None
                self._reading_paused = False
                self.transport.resume_reading()
            return
        self.idle_since = self.loop.time()
        if self.server.draining:
            self.close()

    def receive_timed_out(self) -> None:
        """The request being received took too long to arrive: 408 (when no earlier request is
        being answered on this connection), then close."""
        self.receiving_since = None
        self._queue.clear()
        if self._task is None:
            self._reject(408, "Request Timeout", "The request did not arrive whole within "
                                                 f"{self.server.receive_timeout:g} s.")
        else:
            self.close()

    def _reject(self, status: int, reason: str, message: str) -> None:
        """Answer a request that cannot be parsed, then close (the stream is out of sync).

        While an earlier request on the connection is still being answered, that answer is
        finished first (pipelining): nothing more is read, and the connection closes after it."""
        if self._task is not None:
            self._ignore_input = True
            self._queue.clear()
            self._close_after = True
            return
        if self.transport is not None and not self.closed:
            body = _error_body(status, message)
            self.transport.write(
                (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\nconnection: close\r\ndate: {_http_date()}\r\n"
                 f"server: {_SERVER}\r\n\r\n").encode("ascii") + body)
        self._linger()

    def _linger(self) -> None:
        """Close after answering before the request was read to its end: stop sending, then
        read and drop what the client still sends, for up to `_LINGER_SECONDS`. Closing at once
        with unread bytes would make the kernel reset the connection, and the client could
        lose the answer it has not read yet (nginx's lingering close does the same)."""
        transport = self.transport
        if self.closed or transport is None or not transport.can_write_eof():
            self.close()
            return
        self._lingering = True
        self._parser = httptools.HttpRequestParser(self)  # nothing more is parsed
        transport.write_eof()
        self.loop.call_later(_LINGER_SECONDS, self.close)

    # -- used by requests and the server ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait until the transport's buffer is below its low-water mark."""
        if not self.write_paused or self.closed:
            return
        waiter = self._write_waiter
        if waiter is None or waiter.done():
            waiter = self._write_waiter = self.loop.create_future()
        await waiter

    @property
    def idle(self) -> bool:
        """No request is being answered or waiting (a lingering close has its own timer)."""
        return self._task is None and not self._queue and not self._lingering

    @property
    def state(self) -> ConnectionState:
        """The connection's state, read from the flags its transitions set."""
        if self.closed:
            return ConnectionState.CLOSED
        if self._lingering:
            return ConnectionState.LINGERING
        if self._task is not None or self._queue:
            return ConnectionState.ACTIVE
        return ConnectionState.IDLE

    def __repr__(self) -> str:
        return f"<Connection {self.state.value} queued={len(self._queue)}>"

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.close()


class HttpServer:
    """An HTTP/1.1 listener running `handler` for each request (see the module's docstring)."""

    def __init__(self, handler: Handler, *, max_body: int,
                 keepalive_timeout: float = KEEPALIVE_TIMEOUT,
                 receive_timeout: float = RECEIVE_TIMEOUT) -> None:
        self.handler = handler
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.receive_timeout = receive_timeout
        self.connections: set[_Connection] = set()
        self.draining = False
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int, reuse_port: bool = False) -> None:
        """Listen on host:port (raises OSError when that is not possible); with `reuse_port`,
        SO_REUSEPORT: other processes that set it too listen on the same port, and the kernel
        spreads the new connections among them."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _Connection(self, loop), host, port,
                                                reuse_address=True, reuse_port=reuse_port)
        self._sweeper = loop.create_task(self._sweep(), name="poolgate-idle-connections")

    def stop_accepting(self) -> None:
        """Close the listening socket and the idle connections; requests in progress finish,
        answered with `connection: close`."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        for conn in list(self.connections):
            if conn.idle:
                conn.close()

    async def close(self) -> None:
        """Stop accepting and close every connection (requests still running are cancelled)."""
        self.stop_accepting()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for conn in list(self.connections):
            conn.close()
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def _sweep(self) -> None:
        """Close connections idle for longer than the keep-alive timeout, and answer 408 to
        requests that have not arrived whole within the receive timeout."""
        period = min(5.0, self.keepalive_timeout / 4, self.receive_timeout / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            idle_limit = now - self.keepalive_timeout
            receive_limit = now - self.receive_timeout
            for conn in list(self.connections):
                since = conn.receiving_since
                if since is not None and since < receive_limit:
                    conn.receive_timed_out()
                elif conn.idle and conn.idle_since < idle_limit:
                    conn.close()

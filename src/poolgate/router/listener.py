"""The router's listening socket: aiohttp's HTTP/1.1 server, except for malformed requests.

aiohttp answers a request it cannot parse by itself, before any middleware runs: a text/plain
400 quoting the offending bytes (an oversized header's value included) and, for most kinds, an
ERROR log record with a traceback. Its hook for that answer is `RequestHandler.handle_error`, and
the only way to get a subclass used is to build the connections' protocol ourselves, which
`listen` does.
"""

from __future__ import annotations

import asyncio
import logging
from http import HTTPStatus

from aiohttp import web
from aiohttp.http_exceptions import (
    BadHttpMethod,
    BadStatusLine,
    ContentLengthError,
    HttpProcessingError,
    InvalidHeader,
    InvalidURLError,
    LineTooLong,
    TransferEncodingError,
)

from poolgate.router.errors import error_response

log = logging.getLogger("poolgate.router")

# llhttp's reasons are fixed phrases; anything longer is not one of them.
_MAX_REASON = 60
# What each kind of parse error means, in order (BadHttpMethod is a BadStatusLine).
_FIXED_TEXTS: tuple[tuple[type[HttpProcessingError], str], ...] = (
    (BadHttpMethod, "invalid method (or TLS sent to this plain-HTTP port)"),
    (BadStatusLine, "invalid request line"),
    (InvalidURLError, "invalid request target"),
    (InvalidHeader, "invalid header field"),
    (TransferEncodingError, "invalid chunked body"),
    (ContentLengthError, "invalid Content-Length"),
)


def describe_malformed(exc: HttpProcessingError) -> str:
    """What was wrong with a request that could not be parsed, without quoting any of it: a
    header's value may be a credential, and echoing input back invites reflection tricks."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        size = f"{limit} bytes" if limit is not None else "the limit"
        return f"the request line or a header field is longer than {size}"
    for kind, text in _FIXED_TEXTS:
        if isinstance(exc, kind):
            return text
    # What is left quotes no input before its first line break: the C parser's messages are a
    # fixed reason from llhttp, then ":\n\n" and the bytes; the Python parser's are fixed text.
    # A reason that still looks like quoted bytes, or is long, is not trusted anyway.
    reason = exc.message.partition(":\n")[0]
    if "PRI/Upgrade" in reason:
        return "HTTP/2 connection preface (this port speaks HTTP/1.1)"
    if 0 < len(reason) <= _MAX_REASON and reason.isprintable() and not any(
            mark in reason for mark in ("b'", 'b"', "\\")):
        return reason
    return "the request could not be parsed"


class RouterRequestHandler(web.RequestHandler):
    """aiohttp's connection protocol, answering what it cannot parse in the OpenAI error shape
    with one INFO line (a hostile or broken client must not flood the log with tracebacks)."""

    def handle_error(self, request: web.BaseRequest, status: int = 500,
                     exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if isinstance(exc, HttpProcessingError):
            problem = describe_malformed(exc)
            log.info("malformed request from %s answered %d: %s", request.remote, status,
                     problem)
            text = f"malformed HTTP request: {problem}"
        else:
            # Only a bug gets here (the app's middleware answers every error it sees).
            log.error("error answering %s %s", request.method, request.path, exc_info=exc)
            text = ("internal error in the router (see its log)" if status == 500
                    else HTTPStatus(status).phrase)
        if request.writer.output_size > 0:
            # As aiohttp does: part of a response is out, the connection can only be dropped.
            raise ConnectionError("response already started; cannot send an error")
        response = error_response(status, text)
        response.force_close()
        return response


async def listen(runner: web.AppRunner, host: str, port: int) -> asyncio.Server:
    """Accept connections for `runner`'s app on host:port (after `runner.setup()`); closing the
    returned server stops accepting, and `runner.cleanup()` closes the connections."""
    server = runner.server
    assert server is not None, "runner.setup() first"
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        # access_log=None: no access log, as the router always ran (aiohttp's stub wants a Logger)
        lambda: RouterRequestHandler(server, loop=loop, access_log=None),  # type: ignore[arg-type]
        host, port, reuse_address=True)

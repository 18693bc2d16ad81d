"""The upstream side of the proxy: one pooled HTTP client, and relaying a response to the client."""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp
from aiohttp import web

from poolgate.proxy.headers import downstream_response_headers

# Responses with a known length up to this size are read whole and sent in one write: fewer
# syscalls and no chunked encoding for the common non-streaming completion.
_BUFFER_LIMIT = 1 << 20
_READ_CHUNK = 1 << 16


class UpstreamFailure(Exception):
    """An attempt that failed before any response byte reached the client (so it may be retried).

    `reason` is Envoy's reset reason: `connection failure`, `connection termination`, `timeout`.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def new_session(connect_timeout: float) -> aiohttp.ClientSession:
    """The gateway's upstream client: pooled keep-alive connections per endpoint, no size or
    total-time limits (a long generation must never be cut by the client), bytes passed through
    unchanged (no automatic decompression), and no headers added that the client did not send."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=60.0,
                                     ttl_dns_cache=10)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=None, connect=connect_timeout, sock_read=None),
        auto_decompress=False,
        skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
        cookie_jar=aiohttp.DummyCookieJar(),
        read_bufsize=_READ_CHUNK,
    )


async def open_upstream(session: aiohttp.ClientSession, method: str, url: str,
                        headers: list[tuple[str, str]], body: bytes) -> aiohttp.ClientResponse:
    """Send the request and wait for the response headers; map failures to `UpstreamFailure`."""
    try:
        return await session.request(
            method, url, headers=headers, data=body if body else None, allow_redirects=False,
            compress=None, chunked=None,
        )
    except aiohttp.ClientConnectorError as e:
        raise UpstreamFailure("connection failure", str(e)) from e
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError,
            aiohttp.ClientPayloadError) as e:
        raise UpstreamFailure("connection termination", str(e)) from e
    except aiohttp.ClientResponseError as e:
        raise UpstreamFailure("protocol error", str(e)) from e


@dataclass(slots=True)
class RelayOutcome:
    """What reached the client."""

    status: int
    bytes_sent: int
    completed: bool  # False when the upstream stream broke or the deadline cut it off


async def relay_response(request: web.BaseRequest, upstream: aiohttp.ClientResponse,
                         extra_headers: list[tuple[str, str]] | None = None) -> tuple[web.StreamResponse, RelayOutcome]:
    """Pass the upstream response to the client: status and headers faithfully, the body chunk by
    chunk as it arrives (SSE streams are never buffered). The caller owns closing `upstream`."""
    headers = downstream_response_headers(upstream.headers.items(), upstream.headers)
    if extra_headers:
        headers.extend(extra_headers)
    length = upstream.content_length
    ctype = upstream.headers.get("Content-Type", "")
    if length is not None and length <= _BUFFER_LIMIT and not ctype.startswith("text/event-stream"):
        try:
            body = await upstream.read()
        except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError) as e:
            raise UpstreamFailure("connection termination", str(e)) from e
        whole = web.Response(status=upstream.status, reason=upstream.reason, body=body)
        _set_headers(whole, headers)
        return whole, RelayOutcome(upstream.status, len(body), True)

    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    _set_headers(resp, headers)
    if length is not None:
        resp.content_length = length
    await resp.prepare(request)
    sent = 0
    try:
        async for chunk in upstream.content.iter_any():
            await resp.write(chunk)
            sent += len(chunk)
    except (TimeoutError, aiohttp.ClientPayloadError, aiohttp.ClientConnectionError):
        # The upstream broke mid-body: headers are already out, so the only honest signal left
        # is to end the stream abnormally (the caller closes the client connection).
        return resp, RelayOutcome(upstream.status, sent, False)
    await resp.write_eof()
    return resp, RelayOutcome(upstream.status, sent, True)


def _set_headers(resp: web.StreamResponse, headers: list[tuple[str, str]]) -> None:
    h = resp.headers
    for name, value in headers:
        h.add(name, value)

"""Relaying an upstream response to the client: status and headers faithfully, the body as it comes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from poolgate.http1 import BodyError, UpstreamFailure, UpstreamResponse
from poolgate.proxy.downstream import DownstreamRequest
from poolgate.proxy.headers import downstream_response_headers

# Responses with a known length up to this size are read whole and sent in one write: fewer
# syscalls and no chunked encoding for the common non-streaming completion.
_BUFFER_LIMIT = 1 << 20


@dataclass(slots=True)
class RelayOutcome:
    """What reached the client."""

    status: int
    bytes_sent: int
    completed: bool  # False when the upstream stream broke mid-body


async def relay_response(request: DownstreamRequest, upstream: UpstreamResponse,
                         extra_headers: list[tuple[str, str]] | None = None,
                         transform: Callable[[bytes], bytes] | None = None) -> RelayOutcome:
    """Pass the upstream response to the client; SSE and other unbounded bodies are relayed
    chunk by chunk as they arrive, never buffered. The caller owns releasing `upstream`.

    `transform`, when given, rewrites a buffered 200 body (small, with a known length).
    Raises `UpstreamFailure` when a buffered body breaks before anything was sent.
    """
    headers = response_headers(upstream, extra_headers)
    length = upstream.content_length
    if request.method == "HEAD":
        await request.respond(upstream.status, upstream.reason, headers, b"", length)
        return RelayOutcome(upstream.status, 0, True)
    if (length is not None and length <= _BUFFER_LIMIT
            and not upstream.content_type.startswith("text/event-stream")):
        try:
            body = await upstream.read()
        except BodyError as e:
            raise UpstreamFailure("connection termination", str(e)) from e
        if transform is not None and upstream.status == 200:
            body = transform(body)
        await request.respond(upstream.status, upstream.reason, headers, body)
        return RelayOutcome(upstream.status, len(body), True)

    await request.start(upstream.status, upstream.reason, headers, length)
    sent = 0
    try:
        async for chunk in upstream.iter_chunks():
            await request.write(chunk)
            sent += len(chunk)
    except BodyError:
        # The upstream broke mid-body: headers are already out, so the only honest signal left
        # is to end the stream abnormally (the caller closes the client connection).
        return RelayOutcome(upstream.status, sent, False)
    await request.end()
    return RelayOutcome(upstream.status, sent, True)


def response_headers(upstream: UpstreamResponse,
                     extra_headers: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The upstream's headers as they go to the client, then `extra_headers`."""
    connection = next((v for k, v in upstream.headers if k.lower() == "connection"), None)
    headers = downstream_response_headers(upstream.headers,
                                          {"connection": connection} if connection else {})
    if extra_headers:
        headers.extend(extra_headers)
    return headers

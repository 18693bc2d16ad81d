"""Relaying an upstream response to the client: status and headers faithfully, the body as it comes.

One relay for every response. A small body with a known length is read whole and sent in one
write; anything else (SSE, chunked, large) goes chunk by chunk as it arrives, never buffered.
With a `deadline` (loop time) the relay stops when it passes:

- before anything was sent, `TimeoutError` propagates (the caller answers 504);
- mid-stream, an SSE response given a `cut_frame` (GCPBackendPolicy `timeoutSec`) ends with that
  frame after the last complete event, so the client reads a well-formed ending:

      data: {"error": {"message": ..., "type": "GatewayTimeoutError", "param": null, "code": 504}}

      data: [DONE]

- any other response is reported `timed_out` and the caller drops the connection.

The caller owns releasing the upstream response (`poolgate.proxy.lease`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from poolgate.core.errors import openai_error_body
from poolgate.http.client import BodyError, UpstreamFailure, UpstreamResponse
from poolgate.observability.meter import ResponseMeter
from poolgate.proxy.headers import downstream_response_headers
from poolgate.proxy.responder import Responder

# Responses with a known length up to this size are read whole and sent in one write: fewer
# syscalls and no chunked encoding for the common non-streaming completion.
_BUFFER_LIMIT = 1 << 20
EVENT_END = b"\n\n"
DONE_FRAME = b"data: [DONE]\n\n"


@dataclass(slots=True)
class RelayOutcome:
    """What reached the client."""

    status: int
    bytes_sent: int
    completed: bool  # the whole upstream body was relayed and the response ended normally
    cut: bool = False  # ended early by the deadline with `cut_frame` (a well-formed ending)
    timed_out: bool = False  # the deadline passed mid-body without a frame: drop the connection


def error_frame(message: str, status: int = 504, type_: str = "GatewayTimeoutError") -> bytes:
    """An SSE event carrying an OpenAI-shaped error, then the `[DONE]` terminator."""
    return b"data: " + openai_error_body(message, type_, status) + EVENT_END + DONE_FRAME


def is_event_stream(upstream: UpstreamResponse) -> bool:
    """Whether the upstream answers with Server-Sent Events."""
    return upstream.content_type.startswith("text/event-stream")


async def relay(request: Responder, upstream: UpstreamResponse,
                extra_headers: list[tuple[str, str]] | None = None,
                transform: Callable[[bytes], bytes] | None = None,
                deadline: float | None = None, cut_frame: bytes | None = None,
                meter: ResponseMeter | None = None) -> RelayOutcome:
    """Pass the upstream response to the client (see the module docstring for the deadline).

    `transform`, when given, rewrites a buffered 200 body (small, with a known length).
    `meter`, when given, sees the body as it is relayed (first bytes, gaps, usage).
    Raises `UpstreamFailure` when a buffered body breaks before anything was sent, and
    `TimeoutError` when the deadline passes before anything was sent.
    """
    headers = response_headers(upstream, extra_headers)
    length = upstream.content_length
    if request.method == "HEAD":
        await request.respond(upstream.status, upstream.reason, headers, b"", length)
        return RelayOutcome(upstream.status, 0, True)
    event_stream = is_event_stream(upstream)
    if length is not None and length <= _BUFFER_LIMIT and not event_stream:
        try:
            # A small body has usually arrived with the head: no need to wait for it.
            body = upstream.received()
            if body is not None:
                pass
            elif deadline is None:
                body = await upstream.read()
            else:
                async with asyncio.timeout_at(deadline):
                    body = await upstream.read()
        except BodyError as e:
            raise UpstreamFailure("connection termination", str(e)) from e
        if meter is not None:
            meter.body(body)
        if transform is not None and upstream.status == 200:
            body = transform(body)
        await request.respond(upstream.status, upstream.reason, headers, body)
        return RelayOutcome(upstream.status, len(body), True)

    await request.start(upstream.status, upstream.reason, headers, length)
    if meter is not None:
        meter.streamed = event_stream
    if deadline is None:
        return await _stream(request, upstream, meter)
    return await _stream_until(request, upstream, deadline,
                               cut_frame if event_stream else None, meter)


async def _stream(request: Responder, upstream: UpstreamResponse,
                  meter: ResponseMeter | None) -> RelayOutcome:
    sent = 0
    try:
        while chunk := await upstream.next_chunk():
            if meter is not None:
                meter.chunk(chunk)
            await request.write(chunk)
            sent += len(chunk)
    except BodyError:
        # The upstream broke mid-body: headers are already out, so the only honest signal left
        # is to end the stream abnormally (the caller closes the client connection).
        return RelayOutcome(upstream.status, sent, False)
    await request.end()
    return RelayOutcome(upstream.status, sent, True)


async def _stream_until(request: Responder, upstream: UpstreamResponse, deadline: float,
                        cut_frame: bytes | None, meter: ResponseMeter | None) -> RelayOutcome:
    sent = 0
    tail = EVENT_END
    try:
        while True:
            async with asyncio.timeout_at(deadline):
                chunk = await upstream.next_chunk()
            if not chunk:
                break
            if meter is not None:
                meter.chunk(chunk)
            await request.write(chunk)
            sent += len(chunk)
            tail = (tail + chunk)[-2:]
    except TimeoutError:
        if cut_frame is None:
            return RelayOutcome(upstream.status, sent, False, timed_out=True)
        # Close a half-written event first, so the error frame is parsed as its own event.
        frame = cut_frame if tail == EVENT_END else EVENT_END + cut_frame
        await request.write(frame)
        await request.end()
        return RelayOutcome(upstream.status, sent + len(frame), False, cut=True)
    except BodyError:
        return RelayOutcome(upstream.status, sent, False)
    await request.end()
    return RelayOutcome(upstream.status, sent, True)


def response_headers(upstream: UpstreamResponse,
                     extra_headers: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    """The upstream's headers as they go to the client, then `extra_headers`."""
    headers = downstream_response_headers(upstream.headers, upstream.connection)
    if extra_headers:
        headers.extend(extra_headers)
    return headers

"""Relaying an SSE stream under a hard deadline, ending it with a well-formed error frame.

Used for GCPBackendPolicy `timeoutSec`: a generation that keeps streaming is cut only when the
whole request exceeds the timeout, and the client then reads a complete SSE ending instead of a
dropped connection:

    data: {"error": {"message": ..., "type": "GatewayTimeoutError", "param": null, "code": 504}}

    data: [DONE]

"""

from __future__ import annotations

import asyncio

from poolgate.http1 import BodyError, UpstreamResponse
from poolgate.proxy.downstream import DownstreamRequest
from poolgate.proxy.upstream import RelayOutcome, response_headers
from poolgate.traffic.errors import openai_error_body

EVENT_END = b"\n\n"
DONE_FRAME = b"data: [DONE]\n\n"


def error_frame(message: str, status: int = 504, type_: str = "GatewayTimeoutError") -> bytes:
    """An SSE event carrying an OpenAI-shaped error, then the `[DONE]` terminator."""
    return b"data: " + openai_error_body(message, type_, status) + EVENT_END + DONE_FRAME


def is_event_stream(upstream: UpstreamResponse) -> bool:
    """Whether the upstream answers with Server-Sent Events."""
    return upstream.content_type.startswith("text/event-stream")


async def relay_sse_until(request: DownstreamRequest, upstream: UpstreamResponse,
                          deadline: float, on_deadline: bytes,
                          extra_headers: list[tuple[str, str]] | None = None,
                          ) -> tuple[RelayOutcome, bool]:
    """Stream `upstream` to the client until it ends or the loop time passes `deadline`.

    Returns (outcome, cut). When the deadline passes, `on_deadline` (an SSE error frame) is
    written after the last complete event and the response is ended normally; the outcome is
    then not `completed` (the caller closes the upstream so the server aborts).
    """
    await request.start(upstream.status, upstream.reason, response_headers(upstream, extra_headers))
    sent = 0
    tail = EVENT_END
    chunks = upstream.iter_chunks()
    try:
        while True:
            try:
                async with asyncio.timeout_at(deadline):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                break
            await request.write(chunk)
            sent += len(chunk)
            tail = (tail + chunk)[-2:]
    except TimeoutError:
        # Close a half-written event first, so the error frame is parsed as its own event.
        frame = on_deadline if tail == EVENT_END else EVENT_END + on_deadline
        await request.write(frame)
        await request.end()
        return RelayOutcome(upstream.status, sent + len(frame), False), True
    except BodyError:
        return RelayOutcome(upstream.status, sent, False), False
    await request.end()
    return RelayOutcome(upstream.status, sent, True), False

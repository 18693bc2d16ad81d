"""Relaying an SSE stream under a hard deadline, ending it with a well-formed error frame.

Used for GCPBackendPolicy `timeoutSec`: a generation that keeps streaming is cut only when the
whole request exceeds the timeout, and the client then reads a complete SSE ending instead of a
dropped connection:

    data: {"error": {"message": ..., "type": "GatewayTimeoutError", "param": null, "code": 504}}

    data: [DONE]

"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from poolgate.http1 import BodyError, UpstreamResponse
from poolgate.proxy.headers import downstream_response_headers
from poolgate.proxy.upstream import RelayOutcome

EVENT_END = b"\n\n"
DONE_FRAME = b"data: [DONE]\n\n"


def error_frame(message: str, status: int = 504, type_: str = "GatewayTimeoutError") -> bytes:
    """An SSE event carrying an OpenAI-shaped error, then the `[DONE]` terminator."""
    body = orjson.dumps({"error": {"message": message, "type": type_, "param": None,
                                   "code": status}})
    return b"data: " + body + EVENT_END + DONE_FRAME


def is_event_stream(upstream: UpstreamResponse) -> bool:
    """Whether the upstream answers with Server-Sent Events."""
    return upstream.content_type.startswith("text/event-stream")


async def relay_sse_until(request: web.BaseRequest, upstream: UpstreamResponse,
                          deadline: float, on_deadline: bytes,
                          extra_headers: list[tuple[str, str]] | None = None,
                          ) -> tuple[web.StreamResponse, RelayOutcome, bool]:
    """Stream `upstream` to the client until it ends or the loop time passes `deadline`.

    Returns (response, outcome, cut). When the deadline passes, `on_deadline` (an SSE error
    frame) is written after the last complete event and the response is ended normally; the
    outcome is then not `completed` (the caller closes the upstream so the server aborts).
    """
    connection = next((v for k, v in upstream.headers if k.lower() == "connection"), None)
    headers = downstream_response_headers(upstream.headers,
                                          {"connection": connection} if connection else {})
    if extra_headers:
        headers.extend(extra_headers)
    resp = web.StreamResponse(status=upstream.status, reason=upstream.reason)
    for name, value in headers:
        resp.headers.add(name, value)
    await resp.prepare(request)
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
            await resp.write(chunk)
            sent += len(chunk)
            tail = (tail + chunk)[-2:]
    except TimeoutError:
        # Close a half-written event first, so the error frame is parsed as its own event.
        frame = on_deadline if tail == EVENT_END else EVENT_END + on_deadline
        await resp.write(frame)
        await resp.write_eof()
        return resp, RelayOutcome(upstream.status, sent + len(frame), False), True
    except BodyError:
        return resp, RelayOutcome(upstream.status, sent, False), False
    await resp.write_eof()
    return resp, RelayOutcome(upstream.status, sent, True), False

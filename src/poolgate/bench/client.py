"""Sending one benchmark request with aiohttp and timing it chunk by chunk."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Mapping

import aiohttp
import orjson

from poolgate.bench.records import RequestRecord
from poolgate.bench.sse import SSEDecoder
from poolgate.bench.stream import StreamState, error_message, parse_usage
from poolgate.bench.workload import BenchRequest

# Enough of an error body to show its message; the rest is not needed.
_ERROR_BODY_LIMIT = 4096


def make_session(timeout: float) -> aiohttp.ClientSession:
    """A client session whose pool never limits the load: no per-host or total connection cap."""
    connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
    return aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=timeout, sock_connect=min(timeout, 10.0)),
        skip_auto_headers=("User-Agent",),
        headers={"User-Agent": "poolgate-bench"},
    )


async def send_request(
    session: aiohttp.ClientSession,
    url: str,
    req: BenchRequest,
    *,
    stream: bool,
    headers: Mapping[str, str],
    t0: float,
    scheduled: float,
) -> RequestRecord:
    """Send `req`, read the whole response and return its measurements (never raises on failure)."""
    rec = RequestRecord(
        index=req.index,
        model=req.model,
        prompt_len=req.prompt_len,
        max_tokens=req.output_len,
        scheduled=scheduled,
        group=req.group,
    )
    start = time.perf_counter()
    rec.sent = start - t0
    try:
        async with session.post(url, data=req.body, headers=headers) as resp:
            rec.status = resp.status
            if resp.status != 200:
                body = await resp.content.read(_ERROR_BODY_LIMIT)
                rec.error = f"http_{resp.status}"
                rec.error_detail = _error_detail(body)
            elif stream:
                await _read_stream(resp, rec, start)
            else:
                _read_whole(await resp.read(), rec)
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        rec.error, rec.error_detail = "timeout", "no complete response within --timeout"
    except aiohttp.ClientConnectorError as e:
        rec.error, rec.error_detail = "connect_error", str(e)
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as e:
        rec.error, rec.error_detail = "disconnected", str(e) or type(e).__name__
    except aiohttp.ClientError as e:
        rec.error, rec.error_detail = "client_error", f"{type(e).__name__}: {e}"
    except OSError as e:
        rec.error, rec.error_detail = "connect_error", f"{type(e).__name__}: {e}"
    end = time.perf_counter()
    rec.finished = end - t0
    if rec.error is None:
        rec.e2e = end - start
    return rec


async def _read_stream(resp: aiohttp.ClientResponse, rec: RequestRecord, start: float) -> None:
    decoder = SSEDecoder()
    state = StreamState()
    async for chunk in resp.content.iter_any():
        now = time.perf_counter()
        for data in decoder.feed(chunk):
            state.observe(data, now)
    now = time.perf_counter()
    for data in decoder.close():
        state.observe(data, now)
    times = state.token_times
    if times:
        rec.ttft = times[0] - start
        rec.itl = [b - a for a, b in itertools.pairwise(times)]
    usage = state.usage
    if usage is not None:
        rec.prompt_tokens = usage.prompt_tokens
        rec.cached_tokens = usage.cached_tokens
        rec.output_tokens = usage.completion_tokens
    if rec.output_tokens is None and times:
        # Without usage (a server ignoring stream_options) each token chunk counts as one token.
        rec.output_tokens = len(times)
    if state.error is not None:
        rec.error, rec.error_detail = "stream_error", state.error
    elif not state.done:
        rec.error = "incomplete_stream"
        rec.error_detail = f"stream ended without [DONE] after {state.events} events"


def _read_whole(body: bytes, rec: RequestRecord) -> None:
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError:
        rec.error, rec.error_detail = "bad_response", f"not JSON: {body[:120]!r}"
        return
    if isinstance(obj, dict) and "error" in obj:
        rec.error, rec.error_detail = "response_error", error_message(obj)
        return
    usage = parse_usage(obj)
    if usage is None:
        rec.error, rec.error_detail = "bad_response", "response has no usage"
        return
    rec.prompt_tokens = usage.prompt_tokens
    rec.cached_tokens = usage.cached_tokens
    rec.output_tokens = usage.completion_tokens


def _error_detail(body: bytes) -> str:
    try:
        return error_message(orjson.loads(body))
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:300]

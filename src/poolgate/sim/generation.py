"""`POST /v1/chat/completions` and `POST /v1/completions`: validation, faults, (SSE) answers."""

from __future__ import annotations

import asyncio
import time
import zlib
from dataclasses import dataclass

from aiohttp import web

from poolgate.core.sim_tokens import encode, render_chat
from poolgate.sim.engine import QueueFull, SimRequest, TokenOutput
from poolgate.sim.errors import ApiError, injected, queue_full, starting
from poolgate.sim.faults import FaultKind
from poolgate.sim.protocol import (
    ChatRequest,
    CompletionRequest,
    check_lengths,
    check_n,
    parse_json,
    validate,
)
from poolgate.sim.replica import Replica
from poolgate.sim.responses import (
    SSE_DONE,
    Envelope,
    Usage,
    chat_completion,
    chat_role_chunk,
    chat_token_chunk,
    completion_token_chunk,
    text_completion,
    usage_chunk,
)
from poolgate.sim.tokens import fingerprint

JSON_HEADERS = {"Content-Type": "application/json"}
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8"}


@dataclass(frozen=True, slots=True)
class _Job:
    chat: bool
    env: Envelope
    sim: SimRequest
    stream: bool
    include_usage: bool
    continuous_usage: bool
    crash_after_tokens: int | None


class ConnectionCut(Exception):
    """A crash fault cut the connection; nothing more is sent."""


def _completion_prompt(req: CompletionRequest) -> list[int]:
    p = req.prompt
    if isinstance(p, str):
        return encode(p)
    if p and all(isinstance(x, int) for x in p):
        return [int(x) for x in p if isinstance(x, int)]
    if len(p) != 1:
        raise ApiError(400, "poolgate sim answers one prompt per request; send prompts one by one.",
                       "BadRequestError", "prompt")
    first = p[0]
    if isinstance(first, str):
        return encode(first)
    if isinstance(first, list):
        return list(first)
    return [first]


async def _prepare(replica: Replica, request: web.Request, chat: bool) -> _Job:
    if not replica.ready:
        raise starting()
    data = parse_json(await request.read())
    req: ChatRequest | CompletionRequest
    if chat:
        req = validate(ChatRequest, data)
        adapter = replica.resolve_model(req.model)
        check_n(req.n)
        prompt = encode(render_chat((m.role, m.text()) for m in req.messages))
        user_max, param = req.requested_max_tokens()
    else:
        req = validate(CompletionRequest, data)
        adapter = replica.resolve_model(req.model)
        check_n(req.n)
        prompt = _completion_prompt(req)
        user_max, param = req.requested_max_tokens()
    max_tokens = check_lengths(len(prompt), user_max, param, replica.options.model_len)
    plan = replica.faults.plan()
    if plan.added_latency > 0:
        await replica.runner.sleep(plan.added_latency)
    if plan.kind is FaultKind.ERROR:
        raise injected(plan.error_status)
    if plan.kind is FaultKind.HANG:
        await asyncio.Future()  # never answers; cancelled when the client goes away
    seed = zlib.crc32(f"{replica.seed}:{fingerprint(prompt)}:{req.seed or 0}".encode())
    request_id = replica.new_id("chatcmpl" if chat else "cmpl")
    sim = SimRequest(
        request_id=request_id, prompt_token_ids=prompt, max_tokens=max_tokens,
        sampling_seed=seed, adapter=adapter, stop=req.stop_strings(), ignore_eos=req.ignore_eos,
        eos_enabled=chat and user_max is None,
    )
    env = Envelope(request_id, int(time.time()), replica.reported_model(adapter),
                   replica.fingerprint)
    opts = req.stream_options
    include_usage = bool(opts and opts.include_usage)
    return _Job(chat, env, sim, bool(req.stream), include_usage,
                include_usage and bool(opts and opts.continuous_usage_stats),
                plan.crash_after_tokens)


def _cut(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
    raise ConnectionCut


async def handle_generation(replica: Replica, request: web.Request, chat: bool) -> web.StreamResponse:
    """Serve one chat or completions request from start to finish."""
    replica.in_flight += 1
    try:
        job = await _prepare(replica, request, chat)
        try:
            queue = replica.runner.submit(job.sim)
        except QueueFull:
            raise queue_full(replica.options.max_waiting or 0) from None
        try:
            if job.stream:
                return await _stream(replica, request, job, queue)
            return await _complete(request, job, queue)
        finally:
            # Also runs on client disconnect (handler cancellation): frees the slot and KV now.
            replica.runner.release(job.sim.request_id)
    finally:
        replica.in_flight -= 1


async def _complete(request: web.Request, job: _Job,
                    queue: asyncio.Queue[TokenOutput]) -> web.Response:
    parts: list[str] = []
    while True:
        out = await queue.get()
        if job.crash_after_tokens is not None and out.completion_tokens > job.crash_after_tokens:
            _cut(request)
        parts.append(out.delta)
        if out.finished is not None:
            break
    f = out.finished
    usage = Usage(f.prompt_tokens, f.completion_tokens, out.cached_tokens)
    build = chat_completion if job.chat else text_completion
    body = build(job.env, "".join(parts), f.finish_reason, f.stop_reason, usage)
    return web.Response(body=body, headers=JSON_HEADERS)


async def _stream(replica: Replica, request: web.Request, job: _Job,
                  queue: asyncio.Queue[TokenOutput]) -> web.StreamResponse:
    interval = replica.options.stream_interval
    prompt_tokens = len(job.sim.prompt_token_ids)
    resp: web.StreamResponse | None = None
    pending: list[str] = []
    pending_tokens = 0
    while True:
        out = await queue.get()
        if job.crash_after_tokens is not None and out.completion_tokens > job.crash_after_tokens:
            _cut(request)
        usage = Usage(prompt_tokens, out.completion_tokens, out.cached_tokens)
        if resp is None:
            # vLLM sends headers and the role chunk with the first token, not before.
            resp = web.StreamResponse(headers=SSE_HEADERS)
            await resp.prepare(request)
            if job.chat:
                await resp.write(chat_role_chunk(
                    job.env, Usage(prompt_tokens, 0, 0) if job.continuous_usage else None))
        pending.append(out.delta)
        pending_tokens += 1
        f = out.finished
        if f is None and out.completion_tokens > 1 and pending_tokens < interval:
            continue
        chunk = chat_token_chunk if job.chat else completion_token_chunk
        await resp.write(chunk(
            job.env, "".join(pending), f.finish_reason if f else None,
            f.stop_reason if f else None, usage if job.continuous_usage else None,
            fingerprint=f is not None and not job.include_usage))
        pending, pending_tokens = [], 0
        if f is not None:
            break
    if job.include_usage:
        obj = "chat.completion.chunk" if job.chat else "text_completion"
        await resp.write(usage_chunk(job.env, obj, usage))
    await resp.write(SSE_DONE)
    await resp.write_eof()
    return resp

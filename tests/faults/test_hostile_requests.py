"""Requests a proxy must not pass on, and headers only a proxy may set, through the real gateway
in front of a model-server stand-in that records what reaches it."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from aiohttp import web

from tests.e2e.test_gateway_policies import _gateway
from tests.support.apps import serve_app
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

BODY = b'{"model": "m", "prompt": "hi", "max_tokens": 1}'


@contextlib.asynccontextmanager
async def _recording_server() -> AsyncIterator[tuple[str, list[web.Request]]]:
    """A model server stand-in: answers every request, keeps each one it saw (but the
    gateway's metrics scrapes)."""
    seen: list[web.Request] = []

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(text="vllm:num_requests_waiting 0\n")

    async def any_request(request: web.Request) -> web.Response:
        await request.read()
        seen.append(request)
        return web.json_response({"choices": []})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    app.router.add_route("*", "/{tail:.*}", any_request)
    async with serve_app(app) as port:
        yield f"127.0.0.1:{port}", seen


async def _raw(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """One raw request; the status and the body of the answer (read to the connection's end)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(head + body)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    status = int(answer.split(b" ", 2)[1])
    return status, answer.partition(b"\r\n\r\n")[2]


@pytest.mark.parametrize(("head", "status", "message"), [
    pytest.param(b"POST /v1/completions HTTP/1.1\r\nHost: a\r\nHost: b\r\n", 400,
                 b"more than one Host", id="two-hosts"),
    pytest.param(b"POST /v1/completions HTTP/1.1\r\n", 400, b"must have a Host", id="no-host"),
    pytest.param(b"POST /v1/completions HTTP/1.1\r\nHost: a\r\n"
                 + b"".join(b"x-h%d: v\r\n" % i for i in range(1000)), 431,
                 b"more than 100 header fields", id="1000-headers"),
    pytest.param(b"CONNECT internal-host:22 HTTP/1.1\r\nHost: internal-host:22\r\n", 404,
                 b"CONNECT is not routed", id="connect"),
    pytest.param(b"TRACE /v1/completions HTTP/1.1\r\nHost: a\r\n", 405,
                 b"TRACE is not allowed", id="trace"),
    pytest.param(b"GET internal-host:22 HTTP/1.1\r\nHost: a\r\n", 400,
                 b"Malformed HTTP request", id="authority-target"),
])
async def test_questionable_requests_are_refused_and_never_reach_the_model_server(
        procs: ProcessGroup, tmp_path: Path, head: bytes, status: int, message: bytes) -> None:
    async with _recording_server() as (address, seen):
        gw = _gateway(procs, tmp_path, [address])
        got, body = await _raw(gw.port, head + b"Content-Length: %d\r\nConnection: close\r\n\r\n"
                               % len(BODY), BODY)
        assert (got, message in body) == (status, True), body
        assert orjson.loads(body)["error"]["message"]  # the OpenAI error shape
        assert seen == []


async def test_forwarded_headers_are_rewritten_and_envoy_headers_stripped(
        procs: ProcessGroup, tmp_path: Path) -> None:
    async with _recording_server() as (address, seen):
        gw = _gateway(procs, tmp_path, [address])
        head = (b"POST /v1/completions HTTP/1.1\r\nHost: gw.example\r\n"
                b"X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Host: evil.example\r\n"
                b"X-Forwarded-Proto: https\r\nX-Envoy-Retry-On: 5xx\r\n"
                b"X-Envoy-Upstream-Rq-Timeout-Ms: 1\r\n"
                b"X-Gateway-Destination-Endpoint: 10.0.0.1:22\r\n"
                b"Content-Type: application/json\r\nConnection: close\r\n")
        status, _ = await _raw(gw.port, head + b"Content-Length: %d\r\n\r\n" % len(BODY), BODY)
        assert status == 200
        [request] = seen
        headers = request.headers
        # The client's chain, then the client as the gateway saw it (Envoy at the edge).
        assert headers.getall("X-Forwarded-For") == ["203.0.113.9, 127.0.0.1"]
        assert headers.getall("X-Forwarded-Proto") == ["http"]
        assert "X-Forwarded-Host" not in headers
        assert not [name for name in headers if name.lower().startswith("x-envoy-")]
        assert not [name for name in headers if name.lower().startswith("x-gateway-destination")]
        assert headers["Host"] == "gw.example"

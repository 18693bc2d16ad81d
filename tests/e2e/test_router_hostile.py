"""`poolgate router` against clients that lie, leave or send garbage (issue 13, item 9).

Raw sockets, because a well-behaved HTTP client cannot send what these tests need: a declared
length it never sends, a body cut off, bytes that are not HTTP.
"""

from __future__ import annotations

import asyncio
import socket
import time

import aiohttp
import orjson
import pytest

from tests.e2e.router_process import RouterProcess, metric, start_router
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e


def exchange(router: RouterProcess, data: bytes, timeout: float = 5.0
             ) -> tuple[int, dict[str, str], bytes, float]:
    """Send `data` on a new connection; (status, headers, body, seconds to the answer).

    Reads until the router closes the connection or the body's Content-Length arrived; a wait
    past `timeout` fails the test.
    """
    port = int(router.url.rsplit(":", 1)[1])
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        raw = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                pytest.fail(f"no complete answer within {timeout} s; got {raw!r}")
            if not chunk:
                break
            raw += chunk
            head, sep, body = raw.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                if len(body) >= length:
                    break
    elapsed = time.monotonic() - started
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body, elapsed


def openai_error(body: bytes, status: int) -> str:
    """The message of an OpenAI-shaped error body, after checking the shape."""
    doc = orjson.loads(body)
    assert set(doc) == {"error"}
    assert set(doc["error"]) == {"message", "type", "param", "code"}
    assert doc["error"]["code"] == status
    message: str = doc["error"]["message"]
    return message


async def log_has(router: RouterProcess, fragment: str, count: int = 1,
                  timeout: float = 5.0) -> str:
    """The router's output once `count` lines contain `fragment` (fails after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        out = router.process.output()
        if sum(fragment in line for line in out.splitlines()) >= count:
            return out
        assert time.monotonic() < deadline, f"{fragment!r} not logged {count} times:\n{out}"
        await asyncio.sleep(0.05)


TEN_GB_DECLARED = (b"POST /infer HTTP/1.1\r\nHost: r\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 10000000000\r\n\r\n{\"prompt\": ")


async def test_declared_length_over_the_limit_is_refused_at_once(procs: ProcessGroup) -> None:
    router = start_router(procs)
    # Headers only, plus the body's first bytes: the router must not wait for the other 10 GB.
    status, headers, body, elapsed = exchange(router, TEN_GB_DECLARED)
    assert status == 413
    assert elapsed < 2.0
    assert headers["connection"] == "close"
    assert headers["x-poolgate-reason"] == "body_too_large"
    message = openai_error(body, 413)
    assert "10000000000 bytes" in message and "1048576" in message and "MAX_BODY_BYTES" in message

    limited = start_router(procs, MAX_BODY_BYTES="100")
    status, _, body, elapsed = exchange(
        limited, b"POST /infer HTTP/1.1\r\nHost: r\r\nContent-Length: 101\r\n\r\n")
    assert (status, elapsed < 2.0) == (413, True)
    assert "limit of 100 bytes" in openai_error(body, 413)
    assert "Traceback" not in router.process.output() + limited.process.output()


async def test_every_answer_to_infer_is_counted_413_included(procs: ProcessGroup) -> None:
    router = start_router(procs)
    # A chunked body declares no length: it is refused once it grows past the limit (1 MiB).
    chunk = b"x" * (600 << 10)
    status, _, too_large, _ = exchange(
        router, b"POST /infer HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
                + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    assert status == 413
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{router.url}/infer") as r:
            assert r.status == 405
        async with s.post(f"{router.url}/infer", data=b"{") as r:
            assert r.status == 400
        async with s.post(f"{router.url}/infer", json={"prompt": "hi"}) as r:
            assert r.status == 200
        counted = {code: await metric(s, router, "poolgate_router_requests_total", {"code": code})
                   for code in ("200", "400", "405", "413")}
    assert counted == {"200": 1, "400": 1, "405": 1, "413": 1}
    assert "limit of 1048576 bytes" in openai_error(too_large, 413)


async def test_client_leaving_during_the_body_is_one_line_not_an_error(
        procs: ProcessGroup) -> None:
    router = start_router(procs)
    port = int(router.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"POST /infer HTTP/1.1\r\nHost: r\r\nContent-Length: 100\r\n\r\n{\"pro")
        await asyncio.sleep(0.2)
    out = await log_has(router, "closed the connection while sending the request body")
    lines = [line for line in out.splitlines() if "closed the connection" in line]
    assert len(lines) == 1
    assert " INFO " in lines[0] and "POST /infer" in lines[0]
    assert "Traceback" not in out
    assert " ERROR " not in out
    async with aiohttp.ClientSession() as s:  # an unanswered request is not an answer
        assert await metric(s, router, "poolgate_router_requests_total") == 0


MALFORMED = [
    pytest.param(b"GARBAGE\r\n\r\n", "invalid method", id="not-a-method"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01" + b"\x00" * 64, "TLS", id="tls-hello"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nBad Header\r\n\r\n", "header", id="bad-header"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: r\r\nX-A: a\x00b\r\n\r\n", "header",
                 id="nul-in-value"),
    pytest.param(b"POST /infer HTTP/1.1\r\nHost: r\r\nContent-Length: 2\r\nContent-Length: 3"
                 b"\r\n\r\n{}", "Content-Length", id="two-lengths"),
    pytest.param(b"POST /infer HTTP/1.1\r\nHost: r\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"ZZ\r\nabc\r\n0\r\n\r\n", "chunk", id="bad-chunk-size"),
    pytest.param(b"GET /healthz HTTP/1.1\r\nHost: r\r\n"
                 + b"".join(b"X-%d: 1\r\n" % i for i in range(200)) + b"\r\n",
                 "headers", id="too-many-headers"),
    pytest.param(b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: r\r\n\r\n", "8190 bytes",
                 id="long-request-line"),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "HTTP/2", id="http2-preface"),
]


async def test_malformed_requests_get_400_and_one_short_line_each(procs: ProcessGroup) -> None:
    router = start_router(procs)
    for case in MALFORMED:
        data, fragment = case.values
        assert isinstance(data, bytes) and isinstance(fragment, str)
        status, _, body, _ = exchange(router, data)
        assert status == 400, case.id
        message = openai_error(body, 400)
        assert message.startswith("malformed HTTP request: "), case.id
        assert fragment in message, (case.id, message)
    out = await log_has(router, "malformed request from", count=len(MALFORMED))
    await asyncio.sleep(0.2)  # nothing more comes
    out = router.process.output()
    assert sum("malformed request from" in line for line in out.splitlines()) == len(MALFORMED)
    assert "Traceback" not in out
    assert " ERROR " not in out
    assert max(len(line) for line in out.splitlines()) < 300


async def test_oversized_header_is_refused_without_echoing_it(procs: ProcessGroup) -> None:
    router = start_router(procs)
    secret = b"sk-SECRET-" + b"s" * 9000
    status, _, body, _ = exchange(
        router, b"GET /healthz HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer " + secret
                + b"\r\n\r\n")
    assert status == 400
    assert b"SECRET" not in body and b"sss" not in body
    assert "longer than 8190 bytes" in openai_error(body, 400)
    out = await log_has(router, "malformed request from")
    assert "SECRET" not in out and "sss" not in out

"""Malformed input, generated: HTTP bytes at the listener and manifests at the loader. Whatever
comes in, the answer is never a 5xx, never a traceback, never a hang."""

from __future__ import annotations

import asyncio
import contextlib
import random
import tempfile
from pathlib import Path

import aiohttp
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolgate.api.kinds import SCHEMAS
from poolgate.config.build import load_snapshot
from tests.e2e.gateway_fleet import start_fleet
from tests.e2e.test_gateway_policies import BASE, _gateway
from tests.support.processes import ProcessGroup

VALID = [
    b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    b"Content-Length: 47\r\n\r\n{\"model\": \"m\", \"prompt\": \"hi\", \"max_tokens\": 1}",
    b"GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\n\r\n",
]
NASTY = [
    b"\x00\x01\x02\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"GET /\r\n\r\n", b" / HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: -1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /%00%ff/../.. HTTP/1.1\r\nHost: gw\r\n\r\n", b"GET / HTTP/1.1\r\nHost:\r\n\r\n",
    b"GET / HTTP/1.1\r\nHo st: gw\r\n\r\n", b"GET / HTTP/1.1\r\nHost: gw\r\n X: folded\r\n\r\n",
    b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", b"\r\n" * 1000,
    b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    b"Content-Length: 9\r\n\r\n[1, 2, 3]",
    b"POST /v1/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
    b"Content-Length: 14\r\n\r\n{\"model\": 123}",
]


def _mutations(seed: int, count: int) -> list[bytes]:
    """Valid requests with bytes flipped, inserted, deleted, or lines duplicated and dropped."""
    rnd = random.Random(seed)
    out = []
    for _ in range(count):
        data = bytearray(rnd.choice(VALID))
        for _ in range(rnd.randint(1, 4)):
            op = rnd.randrange(4)
            at = rnd.randrange(len(data))
            if op == 0:
                data[at] = rnd.randrange(256)
            elif op == 1:
                data[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 8)))
            elif op == 2:
                del data[at:at + rnd.randint(1, 8)]
            else:
                lines = bytes(data).split(b"\r\n")
                i = rnd.randrange(len(lines))
                lines.insert(i, lines[i]) if rnd.random() < 0.5 else lines.pop(i)
                data = bytearray(b"\r\n".join(lines))
        out.append(bytes(data))
    return out


async def _send(port: int, data: bytes) -> int | None:
    """Send `data` on a new connection; the status answered, or None if it was closed unanswered.
    Raises TimeoutError when the gateway neither answers nor closes within 5 s after the client
    stops sending (a hang)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        writer.write_eof()
        answer = await asyncio.wait_for(reader.read(), 5)
    except (ConnectionResetError, BrokenPipeError):
        return None
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    if not answer.startswith(b"HTTP/1."):
        return None
    return int(answer.split(b" ", 2)[1])


@pytest.mark.e2e
async def test_a_corpus_of_malformed_http_gets_no_5xx_no_traceback_no_hang(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1)
    gw = _gateway(procs, tmp_path, fleet.addresses)
    corpus = NASTY + _mutations(seed=1, count=250)
    statuses = []
    for chunk in range(0, len(corpus), 25):  # a few connections at a time
        statuses += await asyncio.gather(*(_send(gw.port, d) for d in corpus[chunk:chunk + 25]))
    assert not [s for s in statuses if s is not None and s >= 500], statuses
    output = gw.proc.output()
    assert "Traceback" not in output, output[output.find("Traceback") - 300:][:3000]
    async with aiohttp.ClientSession() as s, s.get(f"{gw.admin}/healthz") as r:
        assert r.status == 200
    assert gw.proc.proc.poll() is None


# -- manifests --------------------------------------------------------------------------------

KINDS = sorted(SCHEMAS)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-2, 70000), st.floats(allow_nan=True),
                    st.text(max_size=12), st.sampled_from(["1s", "10ms", "-1s", "Inline", "HTTP"]))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(["name", "port", "spec", "rules", "targetRefs", "weight",
                                     "selector", "matchLabels", "backendRefs", "retry",
                                     "circuitBreaker", "timeout", "kind", "group"]) | st.text(
                                         max_size=8), inner, max_size=4)), max_leaves=12)


@st.composite
def documents(draw: st.DrawFn) -> object:
    """A document that looks like one of the kinds poolgate reads, with random contents."""
    group, kind = draw(st.sampled_from(KINDS))
    version = draw(st.sampled_from([*sorted(SCHEMAS[group, kind]), "v9"]))
    doc: dict[str, object] = {"apiVersion": f"{group}/{version}", "kind": kind,
                              "metadata": draw(st.one_of(
                                  st.fixed_dictionaries({"name": st.text(max_size=10)}), VALUES))}
    doc["spec"] = draw(VALUES)
    return draw(st.one_of(st.just(doc), VALUES))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(documents(), min_size=1, max_size=4), st.booleans())
def test_generated_manifests_load_into_problems_never_an_exception(
        docs: list[object], also_the_base: bool) -> None:
    text = yaml.safe_dump_all(docs, allow_unicode=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_text((BASE % {"timeouts": ""} if also_the_base else "") + text)
        result = load_snapshot([path])
    assert result.snapshot is not None or result.errors


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_as_a_manifest_are_a_problem_not_an_exception(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.yaml"
        path.write_bytes(data)
        load_snapshot([path])

"""Streams under faults: the model server killed mid-stream, and SIGTERM with streams in flight."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.e2e.gateway_fleet import (
    Fleet,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.e2e.test_gateway_policies import BASE
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

STREAM = {"model": "/model/llama2", "prompt": "tell me a story", "max_tokens": 150,
          "stream": True, "ignore_eos": True}


def _gateway(procs: ProcessGroup, tmp_path: Path, fleet: Fleet, *extra: str) -> RunningGateway:
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(BASE % {"timeouts": ""})
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    return start_gateway(procs, config, *extra)


async def _status(gw: RunningGateway) -> dict[str, object]:
    async with aiohttp.ClientSession() as s, s.get(f"{gw.admin}/status") as r:
        return dict(await r.json())


async def test_a_backend_killed_mid_stream_ends_the_clients_stream_and_releases_everything(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1, time_scale=0.1)  # ~20 ms a token: a stream of ~3 s
    gw = _gateway(procs, tmp_path, fleet)
    received = b""
    started = time.monotonic()
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/completions",
                                                    json=STREAM) as r:
        assert r.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            async for chunk in r.content.iter_any():
                received += chunk
                if received.count(b"data: ") == 5:
                    fleet.proc.kill()  # SIGKILL mid-stream
    assert time.monotonic() - started < 10  # the stream ended, it did not hang
    assert b"data: [DONE]" not in received  # a cut stream is not dressed up as complete
    [record] = await gw.access_log(1)
    assert record["flag"] == "UPE"
    status = await _status(gw)
    assert status["active_requests"] == 0
    [pool] = status["pools"].values()  # type: ignore[attr-defined]
    assert [e["in_flight"] for e in pool["endpoints"]] == [0]


async def test_sigterm_lets_streams_in_flight_finish_to_done(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2, time_scale=0.2)  # ~10 ms a token: streams of ~1.5 s
    gw = _gateway(procs, tmp_path, fleet, "--drain-seconds", "20")

    async def stream(s: aiohttp.ClientSession) -> bytes:
        async with s.post(f"{gw.url}/v1/completions", json=STREAM) as r:
            assert r.status == 200
            return await r.read()

    async with aiohttp.ClientSession() as s:
        streams = [asyncio.create_task(stream(s)) for _ in range(10)]
        await asyncio.sleep(0.5)
        os.kill(gw.proc.pid, signal.SIGTERM)
        bodies = await asyncio.gather(*streams)
    assert all(body.rstrip().endswith(b"data: [DONE]") for body in bodies)
    gw.proc.proc.wait(timeout=10)
    assert gw.proc.proc.returncode == 0
    records = [orjson.loads(line) for line in gw.proc.output().splitlines()
               if line.startswith("{")]
    assert [(r["status"], r["flag"]) for r in records] == [(200, "-")] * 10

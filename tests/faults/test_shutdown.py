"""SIGTERM with requests in flight: streams finish within the drain time, what is still running
at its end is cut and logged as cut by the gateway, and the process exits promptly."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.e2e.gateway_fleet import start_fleet, start_gateway, write_endpoints
from tests.e2e.test_gateway_policies import BASE, REQUEST, _faults
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e


async def test_requests_still_running_at_the_drain_deadline_are_cut_and_logged_as_such(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1)
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(BASE % {"timeouts": ""})
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    gw = start_gateway(procs, config, "--drain-seconds", "1")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], hang_rate=1.0)  # never answers: outlives the drain
        stuck = asyncio.create_task(s.post(f"{gw.url}/v1/completions", json=REQUEST))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        os.kill(gw.proc.pid, signal.SIGTERM)
        while gw.proc.proc.poll() is None and time.monotonic() - started < 10:
            await asyncio.sleep(0.01)
        elapsed = time.monotonic() - started
        with pytest.raises(aiohttp.ClientError):
            await stuck
    assert gw.proc.proc.returncode == 0
    assert elapsed < 1 + 1.0  # the drain time, then a prompt exit
    [record] = [orjson.loads(line) for line in gw.proc.output().splitlines()
                if line.startswith("{")]
    assert record["flag"] == "DT"
    assert record["error"] == "cut at the end of the drain time (shutdown)"

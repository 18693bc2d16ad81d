"""A model server that dies: its requests go elsewhere at once, without a policy asking for it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.gateway_fleet import Fleet, start_fleet
from tests.e2e.test_gateway_policies import REQUEST, RESET, _gateway
from tests.support.processes import ProcessGroup, free_port

pytestmark = pytest.mark.e2e


async def _load(url: str, rate: float, seconds: float) -> list[int]:
    """`rate` requests per second for `seconds`, each on its own; their statuses."""
    async with aiohttp.ClientSession() as s:

        async def one() -> int:
            async with s.post(f"{url}/v1/completions", json=REQUEST) as r:
                await r.read()
                return r.status

        tasks = []
        started = time.monotonic()
        for i in range(int(rate * seconds)):
            await asyncio.sleep(max(0.0, started + i / rate - time.monotonic()))
            tasks.append(asyncio.create_task(one()))
        return list(await asyncio.gather(*tasks))


async def test_one_of_four_replicas_killed_under_load_fails_no_request(
        procs: ProcessGroup, tmp_path: Path) -> None:
    # One process per replica, so that one can die alone.
    replicas: list[Fleet] = [start_fleet(procs, 1) for _ in range(4)]
    gw = _gateway(procs, tmp_path, [f.addresses[0] for f in replicas])
    load = asyncio.create_task(_load(gw.url, rate=20, seconds=3))
    await asyncio.sleep(1.0)
    replicas[0].proc.kill()  # SIGKILL: no goodbye to anyone
    statuses = await load
    assert statuses.count(200) == len(statuses), sorted(set(statuses))
    records = await gw.access_log(len(statuses))
    retried = [rec for rec in records if rec["attempts"] == 2]
    # The dead replica's connect failure sent at most a few requests to a second endpoint,
    # then it left the candidates: nothing else was sent to it.
    assert len(retried) <= 4, retried
    assert all(rec["endpoint"] != replicas[0].addresses[0] for rec in records
               if rec["attempts"] == 1 and rec["time"] > records[0]["time"] + 1.5)


async def test_all_replicas_down_answers_503_at_once(procs: ProcessGroup, tmp_path: Path) -> None:
    dead = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    gw = _gateway(procs, tmp_path, dead)
    async with aiohttp.ClientSession() as s:
        for _ in range(3):
            started = time.monotonic()
            async with s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
                text = await r.text()
                status = r.status
            assert time.monotonic() - started < 0.5  # generous for a 2-core CI box; ~ms here
            assert status == 503
            assert text.startswith(RESET) and text.endswith("connection failure")

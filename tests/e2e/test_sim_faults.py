"""Fault injection of `poolgate sim`: admin API per replica, flags, startup delay, queue limit."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e._sim_fleet import start_sim
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

CHAT = {"model": "tiny-llama", "messages": [{"role": "user", "content": "hello"}],
        "max_tokens": 4}


async def _running(s: aiohttp.ClientSession, url: str) -> float:
    async with s.get(f"{url}/metrics") as resp:
        for line in (await resp.text()).splitlines():
            if line.startswith("vllm:num_requests_running{"):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no running gauge")


async def test_admin_faults_per_replica(procs: ProcessGroup) -> None:
    sim = start_sim(procs)
    a, b = sim.urls
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{a}/admin/faults") as resp:
            assert (await resp.json())["error_rate"] == 0.0
        async with s.post(f"{a}/admin/faults", json={"error_rate": 1, "error_status": 503}) as resp:
            assert resp.status == 200 and (await resp.json())["error_status"] == 503
        async with s.post(f"{a}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 503
            err = (await resp.json())["error"]
            assert set(err) == {"message", "type", "param", "code"} and err["code"] == 503
        async with s.post(f"{b}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200  # the other replica is untouched
        async with s.post(f"{a}/admin/faults", json={"error_rate": 2}) as resp:
            assert resp.status == 400 and (await resp.json())["error"]["param"] == "error_rate"
        async with s.post(f"{a}/admin/faults", json={"bogus": 1}) as resp:
            assert resp.status == 400

        # Crash after 2 tokens: the stream is cut mid-way, and the slot is freed.
        await s.post(f"{a}/admin/faults", json={"error_rate": 0, "crash_after_tokens": 2})
        body = {**CHAT, "max_tokens": 50, "stream": True}
        async with s.post(f"{a}/v1/chat/completions", json=body) as resp:
            assert resp.status == 200
            with pytest.raises(aiohttp.ClientPayloadError):
                await resp.read()
        await s.post(f"{a}/admin/faults", json={"crash_after_tokens": None})
        assert await _running(s, a) == 0

        # Hang: accepted, never answered; the client gives up and nothing stays running.
        await s.post(f"{a}/admin/faults", json={"hang_rate": 1})
        with pytest.raises(asyncio.TimeoutError):
            async with s.post(f"{a}/v1/chat/completions", json=CHAT,
                              timeout=aiohttp.ClientTimeout(total=0.3)) as resp:
                await resp.read()
        await s.post(f"{a}/admin/faults", json={"hang_rate": 0, "unhealthy": True})
        async with s.get(f"{a}/health") as resp:
            assert resp.status == 503
        await s.post(f"{a}/admin/faults", json={"unhealthy": False, "added_latency": 2.0})
        async with s.get(f"{a}/health") as resp:
            assert resp.status == 200
        # 2 simulated seconds at time scale 10 add ~0.2 s (generous bound, relative to none).
        t0 = time.monotonic()
        async with s.post(f"{a}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 200
        assert time.monotonic() - t0 >= 0.19


async def test_fault_flags_and_startup_delay(procs: ProcessGroup) -> None:
    sim = start_sim(procs, "--startup-delay", "1.5", "--fault-error-rate", "1",
                    "--fault-error-status", "429", replicas=1, time_scale=1.0, wait=False)
    url = sim.urls[0]
    async with aiohttp.ClientSession() as s:
        statuses = []
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                async with s.get(f"{url}/health") as resp:
                    statuses.append(resp.status)
                    if resp.status == 200:
                        break
            except aiohttp.ClientConnectorError:
                pass
            await asyncio.sleep(0.05)
        assert statuses[0] == 503 and statuses[-1] == 200
        async with s.post(f"{url}/v1/chat/completions", json=CHAT) as resp:
            assert resp.status == 429


async def test_waiting_queue_limit_answers_429(procs: ProcessGroup) -> None:
    sim = start_sim(procs, "--max-num-seqs", "1", "--max-waiting", "1", replicas=1,
                    time_scale=1.0)
    url = sim.urls[0]
    long = {**CHAT, "max_tokens": 200}
    async with aiohttp.ClientSession() as s:
        async def post() -> int:
            async with s.post(f"{url}/v1/chat/completions", json=long) as resp:
                await resp.read()
                return resp.status
        first = asyncio.create_task(post())
        await asyncio.sleep(0.1)
        second = asyncio.create_task(post())
        await asyncio.sleep(0.1)
        async with s.post(f"{url}/v1/chat/completions", json=long) as resp:
            assert resp.status == 429
            assert (await resp.json())["error"]["code"] == 429
        assert await first == 200 and await second == 200

"""`poolgate router` forwarding /infer to a real `poolgate sim` (vLLM-compatible) process."""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from tests.e2e.router_process import metric, start_router
from tests.support.processes import ProcessGroup, free_port, poolgate_command, wait_http

pytestmark = pytest.mark.e2e


async def test_forwarding_to_a_simulated_vllm(procs: ProcessGroup) -> None:
    sim_port = free_port()
    sim = procs.start(poolgate_command("sim", "--replicas", "1", "--port", str(sim_port),
                                       "--served-model-name", "tiny-llama", "--profile", "fast",
                                       "--time-scale", "10", "--seed", "7"))
    wait_http(f"http://127.0.0.1:{sim_port}/v1/models", proc=sim)
    backend = f"http://127.0.0.1:{sim_port}"
    router = start_router(procs, MODEL_REF="tiny-llama", BACKEND_URL=backend,
                          BACKEND_HEALTH_INTERVAL_MS="100")
    wrong_model = start_router(procs, wait_ready=False, MODEL_REF="not-served",
                               BACKEND_URL=backend, BACKEND_HEALTH_INTERVAL_MS="100")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{router.url}/infer",
                          json={"prompt": "Say hello", "max_tokens": 5}) as r:
            assert r.status == 200
            body = await r.json()
        assert body["modelRef"] == "tiny-llama"
        assert body["prompt"] == "Say hello"
        assert isinstance(body["completion"], str) and body["completion"]
        assert body["usage"]["completion_tokens"] == 5
        assert body["finishReason"] == "length"
        assert isinstance(body["processingMs"], int) and body["processingMs"] >= 0
        assert await metric(s, router, "poolgate_router_backend_healthy") == 1

        # a backend that does not serve MODEL_REF: not ready, and its 404 is passed on
        async with s.get(f"{wrong_model.url}/readyz") as r:
            assert r.status == 503
            assert "does not serve model 'not-served'" in (await r.json())["reason"]
        async with s.post(f"{wrong_model.url}/infer", json={"prompt": "x"}) as r:
            assert r.status == 404
            assert "backend answered 404" in (await r.json())["error"]["message"]

        # the backend goes away: readiness follows within a few health intervals, /infer is 502
        sim.stop()
        deadline = time.monotonic() + 10
        while True:
            async with s.get(f"{router.url}/readyz") as r:
                if r.status == 503:
                    assert "unreachable" in (await r.json())["reason"]
                    break
            assert time.monotonic() < deadline, "router stayed ready without its backend"
            await asyncio.sleep(0.05)
        async with s.post(f"{router.url}/infer", json={"prompt": "x"}) as r:
            assert r.status == 502

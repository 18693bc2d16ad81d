"""`poolgate router` end to end: endpoints, configuration errors, local overflow modes."""

from __future__ import annotations

import asyncio
import os
import subprocess

import aiohttp
import pytest

from tests.e2e.router_process import metric, start_router
from tests.support.processes import ProcessGroup, free_port, poolgate_command

pytestmark = pytest.mark.e2e


async def post_infer(session: aiohttp.ClientSession, url: str, prompt: str = "hello"
                     ) -> tuple[int, dict[str, str], dict[str, object]]:
    async with session.post(f"{url}/infer", json={"prompt": prompt}) as resp:
        return resp.status, dict(resp.headers), await resp.json()


async def test_endpoints_answer_as_seed_003_shows(procs: ProcessGroup) -> None:
    router = start_router(procs, KV_ENDPOINTS=" redis-0.kv:6379, ,redis-1.kv:6379,",
                          SIMULATED_LATENCY_MS="42")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{router.url}/healthz") as r:
            assert r.status == 200
        async with s.get(f"{router.url}/readyz") as r:
            assert r.status == 200
            assert (await r.json())["status"] == "ready"
        status, _, body = await post_infer(s, router.url, "What is a router?")
        assert status == 200
        assert list(body) == ["modelRef", "prompt", "routerPod", "kvEndpoints", "processingMs"]
        assert body["modelRef"] == "llama-3-8b"
        assert body["prompt"] == "What is a router?"
        assert body["routerPod"] == "router-test-0"
        assert body["kvEndpoints"] == ["redis-0.kv:6379", "redis-1.kv:6379"]
        assert isinstance(body["processingMs"], int) and body["processingMs"] >= 40
        assert await metric(s, router, "poolgate_router_requests_total", {"code": "200"}) == 1
        assert await metric(s, router, "poolgate_router_request_duration_seconds_count") == 1
    log = router.process.output()
    assert "KV endpoints: redis-0.kv:6379, redis-1.kv:6379" in log


async def test_router_pod_falls_back_to_hostname(procs: ProcessGroup) -> None:
    router = start_router(procs, POD_NAME="", HOSTNAME="host-from-env", SIMULATED_LATENCY_MS="0")
    async with aiohttp.ClientSession() as s:
        _, _, body = await post_infer(s, router.url)
    assert body["routerPod"] == "host-from-env"
    assert body["kvEndpoints"] == []


async def test_bad_bodies_get_400_in_the_openai_shape(procs: ProcessGroup) -> None:
    router = start_router(procs)
    cases = [(b'{"prompt": ', "not valid JSON"), (b'{"text": "x"}', "'prompt' is required"),
             (b'{"prompt": 7}', "must be a string")]
    async with aiohttp.ClientSession() as s:
        for data, fragment in cases:
            async with s.post(f"{router.url}/infer", data=data,
                              headers={"content-type": "application/json"}) as r:
                assert r.status == 400
                body = await r.json()
            assert set(body["error"]) == {"message", "type", "param", "code"}
            assert fragment in body["error"]["message"]
            assert body["error"]["code"] == 400
        async with s.get(f"{router.url}/nowhere") as r:
            assert r.status == 404
            assert (await r.json())["error"]["code"] == 404
        async with s.get(f"{router.url}/infer") as r:
            assert r.status == 405
        assert await metric(s, router, "poolgate_router_requests_total", {"code": "400"}) == 3


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param({"MODEL_REF": ""}, "MODEL_REF", id="model-missing"),
        pytest.param({"MAX_CONCURRENCY": "lots"}, "MAX_CONCURRENCY", id="mc-not-int"),
        pytest.param({"MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY", id="mc-zero"),
        pytest.param({"KV_ENDPOINTS": "redis-0"}, "KV_ENDPOINTS", id="kv-no-port"),
        pytest.param({"OVERFLOW": "spill"}, "OVERFLOW", id="overflow"),
        pytest.param({"GLOBAL_MAX_CONCURRENCY": "4"}, "GLOBAL_MAX_CONCURRENCY", id="global-no-kv"),
        pytest.param({"BACKEND_URL": "ftp://x"}, "BACKEND_URL", id="backend"),
    ],
)
def test_bad_environment_fails_at_startup(env: dict[str, str], variable: str) -> None:
    full = {**os.environ, "MODEL_REF": "m", "PORT": str(free_port()), "HOST": "127.0.0.1", **env}
    out = subprocess.run(poolgate_command("router"), env=full, capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.returncode == 2
    assert f"configuration error: {variable}" in out.stderr
    assert "Traceback" not in out.stderr + out.stdout


async def test_queue_mode_serves_everyone_with_at_most_two_in_flight(procs: ProcessGroup) -> None:
    router = start_router(procs, MAX_CONCURRENCY="2", OVERFLOW="queue", SIMULATED_LATENCY_MS="300")
    async with aiohttp.ClientSession() as s:
        sampled: list[float] = []

        async def watch() -> None:
            while True:
                sampled.append(await metric(s, router, "poolgate_router_requests_in_flight"))
                await asyncio.sleep(0.02)

        watcher = asyncio.create_task(watch())
        results = await asyncio.gather(*(post_infer(s, router.url, f"p{i}") for i in range(5)))
        watcher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await watcher
        assert [status for status, _, _ in results] == [200] * 5
        assert sorted(str(body["prompt"]) for _, _, body in results) == [f"p{i}" for i in range(5)]
        assert max(sampled) <= 2
        assert await metric(s, router, "poolgate_router_requests_in_flight_peak") == 2
        assert await metric(s, router, "poolgate_router_queue_wait_seconds_count") == 5


async def test_reject_mode_answers_two_200_and_three_429(procs: ProcessGroup) -> None:
    router = start_router(procs, MAX_CONCURRENCY="2", OVERFLOW="reject", SIMULATED_LATENCY_MS="800")
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(post_infer(s, router.url) for _ in range(5)))
        statuses = sorted(status for status, _, _ in results)
        assert statuses == [200, 200, 429, 429, 429]
        for status, headers, body in results:
            if status == 429:
                assert headers["Retry-After"] == "1"
                assert headers["x-poolgate-reason"] == "concurrency_limit"
                assert body["error"]["code"] == 429  # type: ignore[index]
        assert await metric(s, router, "poolgate_router_requests_rejected_total",
                            {"reason": "concurrency_limit"}) == 3


async def test_queue_timeout_is_503(procs: ProcessGroup) -> None:
    router = start_router(procs, MAX_CONCURRENCY="1", QUEUE_TIMEOUT_MS="200",
                          SIMULATED_LATENCY_MS="700")
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(post_infer(s, router.url) for _ in range(2)))
        assert sorted(status for status, _, _ in results) == [200, 503]
        failed = next(body for status, _, body in results if status == 503)
        assert "QUEUE_TIMEOUT_MS=200" in failed["error"]["message"]  # type: ignore[index]
        assert await metric(s, router, "poolgate_router_requests_rejected_total",
                            {"reason": "queue_timeout"}) == 1


async def test_full_queue_is_429(procs: ProcessGroup) -> None:
    router = start_router(procs, MAX_CONCURRENCY="1", MAX_QUEUE="1", SIMULATED_LATENCY_MS="400")
    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(*(post_infer(s, router.url) for _ in range(3)))
        assert sorted(status for status, _, _ in results) == [200, 200, 429]
        assert next(h for st, h, _ in results if st == 429)["x-poolgate-reason"] == "queue_full"


async def test_unreachable_backend_makes_the_router_unready(procs: ProcessGroup) -> None:
    router = start_router(procs, wait_ready=False, BACKEND_URL=f"http://127.0.0.1:{free_port()}",
                          BACKEND_HEALTH_INTERVAL_MS="100")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{router.url}/readyz") as r:
            assert r.status == 503
            assert "unreachable" in (await r.json())["reason"]
        status, _, body = await post_infer(s, router.url)
        assert status == 502
        assert "failed" in body["error"]["message"]  # type: ignore[index]

"""The endpoint picker inside the gateway, end to end: saturation shedding and LoRA affinity."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1ALPHA2_YAML,
    Fleet,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.support.processes import ProcessGroup, poolgate_command

pytestmark = pytest.mark.e2e

POOL = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
---
""" + POOL_V1ALPHA2_YAML + """\
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: critical, namespace: default}
spec:
  modelName: critical-model
  criticality: Critical
  poolRef: {name: pool}
  targetModels: [{name: /model/llama2, weight: 1}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: sheddable, namespace: default}
spec:
  modelName: sheddable-model
  criticality: Sheddable
  poolRef: {name: pool}
  targetModels: [{name: /model/llama2, weight: 1}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceObjective
metadata: {name: batch, namespace: default}
spec:
  priority: -1
  poolRef: {name: pool}
"""

SHED_MESSAGE = "system saturated, sheddable request dropped"


def _config(tmp_path: Path, fleet: Fleet) -> Path:
    config = tmp_path / "config"
    config.mkdir()
    (config / "pool.yaml").write_text(POOL)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    return config


async def _complete(s: aiohttp.ClientSession, gw: RunningGateway, model: str, max_tokens: int,
                    prompt: str = "hello", headers: dict[str, str] | None = None) -> tuple[int, Any]:
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "ignore_eos": True}
    async with s.post(f"{gw.url}/v1/completions", json=body, headers=headers) as r:
        return r.status, orjson.loads(await r.read())


async def _wait_status(s: aiohttp.ClientSession, gw: RunningGateway,
                       ok: Callable[[list[dict[str, Any]]], bool], what: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 10
    while True:
        async with s.get(f"{gw.admin}/status") as r:
            endpoints: list[dict[str, Any]] = (await r.json())["pools"]["default/pool"]["endpoints"]
        if ok(endpoints):
            return endpoints
        assert time.monotonic() < deadline, f"never saw {what}: {endpoints}"
        await asyncio.sleep(0.05)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await t


async def test_saturated_pool_sheds_sheddable_and_serves_critical(procs: ProcessGroup,
                                                                   tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1, extra=["--max-num-seqs", "1"])
    gw = start_gateway(procs, _config(tmp_path, fleet), "--saturation-queue", "1")
    async with aiohttp.ClientSession() as s:
        # Not saturated yet: a Sheddable request is served.
        status, _ = await _complete(s, gw, "sheddable-model", 2)
        assert status == 200

        # One running + two waiting long Critical requests saturate the only replica.
        hogs = [asyncio.create_task(_complete(s, gw, "critical-model", 1500)) for _ in range(3)]
        try:
            await _wait_status(s, gw, lambda eps: eps[0].get("waiting", 0) >= 1, "a waiting queue")

            status, body = await _complete(s, gw, "sheddable-model", 2)
            assert status == 429
            assert body["error"]["message"] == SHED_MESSAGE

            # An objective with a negative priority is shed too; the unknown-to-InferenceModel
            # model passes through with that priority.
            status, body = await _complete(s, gw, "/model/llama2", 2,
                                           headers={"x-gateway-inference-objective": "batch"})
            assert status == 429 and body["error"]["message"] == SHED_MESSAGE

            # Critical is never shed: it queues behind the others and is served.
            critical = asyncio.create_task(_complete(s, gw, "critical-model", 2))
            await asyncio.sleep(0.3)
            assert not critical.done()
        finally:
            await _cancel(hogs)  # the client disconnects free the replica
        status, _ = await critical
        assert status == 200

        async with s.get(f"{gw.admin}/metrics") as r:
            text = await r.text()
        assert 'poolgate_requests_shed_total{pool="default/pool",reason="saturated"} 2.0' in text


async def test_a_pool_back_from_idle_sees_its_queue_at_once(procs: ProcessGroup,
                                                           tmp_path: Path) -> None:
    """Issue 16, item 5: an idle pool is scraped every 3 s here, but the requests that build a
    queue bring the 50 ms interval back at once: the queue shows and sheds a Sheddable request
    well within one idle interval."""
    fleet = start_fleet(procs, 1, extra=["--max-num-seqs", "1"])
    gw = start_gateway(procs, _config(tmp_path, fleet), "--saturation-queue", "1",
                       "--metrics-staleness", "6", "--scrape-idle-interval", "3",
                       "--scrape-idle-after", "0.2")
    async with aiohttp.ClientSession() as s:
        await asyncio.sleep(1.5)  # idle: the last scrape may now be up to 3 s old
        started = time.monotonic()
        hogs = [asyncio.create_task(_complete(s, gw, "critical-model", 1500)) for _ in range(3)]
        try:
            await _wait_status(s, gw, lambda eps: eps[0].get("waiting", 0) >= 1, "a waiting queue")
            assert time.monotonic() - started < 1.5
            status, body = await _complete(s, gw, "sheddable-model", 2)
            assert status == 429 and body["error"]["message"] == SHED_MESSAGE
        finally:
            await _cancel(hogs)


async def _routed(gw: RunningGateway, model: str, count: int) -> list[str]:
    """Endpoints the gateway's access log shows for the `count` completed requests of `model`."""
    records = await gw.access_log(
        count, lambda rec: rec.get("model") == model and rec.get("status") == 200)
    return [rec["endpoint"] for rec in records]


async def test_lora_requests_go_where_the_adapter_is_loaded(procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2, loras=["sql-lora=/a/sql", "tweet-summary=/a/tweets"],
                        extra=["--max-loras", "1"])
    gw = start_gateway(procs, _config(tmp_path, fleet))

    def running(adapter: str) -> Callable[[list[dict[str, Any]]], bool]:
        return lambda eps: any(adapter in e.get("lora_running", []) for e in eps)

    async with aiohttp.ClientSession() as s:
        # A long request per adapter: each adapter is then active on one replica, whose only
        # LoRA slot it fills.
        hogs = [asyncio.create_task(_complete(s, gw, "sql-lora", 1500, "long sql"))]
        try:
            eps = await _wait_status(s, gw, running("sql-lora"), "sql-lora running")
            sql_home = next(e["address"] for e in eps if "sql-lora" in e["lora_running"])
            hogs.append(asyncio.create_task(_complete(s, gw, "tweet-summary", 1500, "long tweet")))
            eps = await _wait_status(s, gw, running("tweet-summary"), "tweet-summary running")
            tweet_home = next(e["address"] for e in eps if "tweet-summary" in e["lora_running"])
            assert sql_home != tweet_home

            for i in range(6):
                for model in ("sql-lora", "tweet-summary"):
                    status, body = await _complete(s, gw, model, 2, f"question {i} for {model}")
                    assert status == 200, body
        finally:
            await _cancel(hogs)
    assert await _routed(gw, "sql-lora", 6) == [sql_home] * 6
    assert await _routed(gw, "tweet-summary", 6) == [tweet_home] * 6


async def _stream(s: aiohttp.ClientSession, gw: RunningGateway, max_tokens: int) -> int:
    body = {"model": "/model/llama2", "prompt": "hello", "max_tokens": max_tokens,
            "ignore_eos": True, "stream": True}
    async with s.post(f"{gw.url}/v1/completions", json=body) as r:
        await r.read()
        return r.status


async def test_status_counts_streams_awaiting_their_first_token(procs: ProcessGroup,
                                                                tmp_path: Path) -> None:
    # One sequence at a time: a second stream waits in the replica's queue, unanswered.
    fleet = start_fleet(procs, 1, extra=["--max-num-seqs", "1"])
    gw = start_gateway(procs, _config(tmp_path, fleet))

    def counts(eps: list[dict[str, Any]]) -> tuple[int, int]:
        return eps[0]["in_flight"], eps[0]["awaiting_first_token"]

    async with aiohttp.ClientSession() as s:
        hog = asyncio.create_task(_stream(s, gw, 1500))
        await _wait_status(s, gw, lambda eps: counts(eps) == (1, 0), "the first stream answered")
        queued = asyncio.create_task(_stream(s, gw, 2))
        await _wait_status(s, gw, lambda eps: counts(eps) == (2, 1), "a stream awaiting its token")
        # A stream abandoned before its first token stops counting too.
        abandoned = asyncio.create_task(_stream(s, gw, 2))
        await _wait_status(s, gw, lambda eps: counts(eps) == (3, 2), "two streams awaiting")
        await _cancel([abandoned])
        await _wait_status(s, gw, lambda eps: counts(eps) == (2, 1), "the abandoned one gone")
        await _cancel([hog])
        assert await queued == 200
        await _wait_status(s, gw, lambda eps: counts(eps) == (0, 0), "nothing in flight")


CUSTOM_PROFILES = """\
profile: tail-first
plugins:
- type: prefix-cache-scorer
  weight: 4
  params: {loadBoundAbs: 12, loadSignal: in-flight, missSpread: 0.5}
- type: in-flight-scorer
- type: max-score-picker
"""


async def test_pools_run_custom_profiles_from_scheduler_config(procs: ProcessGroup,
                                                              tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2)
    config = _config(tmp_path, fleet)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(CUSTOM_PROFILES)
    gw = start_gateway(procs, config, "--scheduler-config", str(profiles),
                       "--scheduler-profile", "tail-first")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.admin}/status") as r:
            pool = (await r.json())["pools"]["default/pool"]
        assert pool["scheduler_profile"] == "tail-first"
        for _ in range(4):
            status, body = await _complete(s, gw, "/model/llama2", 2, prompt="x" * 300)
            assert status == 200, body
    # Requests with one long shared prompt follow the endpoint that served it first.
    assert len(set(await _routed(gw, "/model/llama2", 4))) == 1


def test_a_bad_scheduler_config_stops_serve_with_its_reason(procs: ProcessGroup,
                                                           tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "pool.yaml").write_text(POOL)
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profile: mine\nplugins: [{type: magic-scorer}]\n")
    # A wide terminal keeps typer's error box from wrapping the message.
    proc = procs.start(poolgate_command("serve", "-f", str(config), "--scheduler-config",
                                        str(profiles), "--port", "0"), env={"COLUMNS": "400"})
    assert proc.proc.wait(timeout=60) == 2
    out = proc.output()
    assert "--scheduler-config" in out and "unknown plugin type 'magic-scorer'" in out
    assert "Traceback" not in out

"""The errors poolgate answers itself, as the openai SDK sees them (issue 16, item 6b): each one
raises the SDK's exception for its status, and the JSON ones carry an OpenAI-shaped body whose
`type` names that exception, from the gateway and from the router alike."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest

from poolgate.core.errors import openai_error_type
from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1ALPHA2_YAML,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.e2e.router_process import start_router
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

CONFIG = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches:
    - path: {type: PathPrefix, value: /v1/completions}
    - path: {type: PathPrefix, value: /v1/chat/completions}
    backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
  - matches: [{path: {type: PathPrefix, value: /empty/}}]
    backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: empty}]
---
""" + POOL_V1ALPHA2_YAML + """\
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: empty, namespace: default}
spec:
  targetPortNumber: 8000
  selector: {app: nothing}
  extensionRef: {name: epp}
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
"""


def assert_openai_shaped(error: openai.APIStatusError, status: int) -> None:
    """The SDK parsed an OpenAI error body whose `type` names the SDK's exception."""
    assert error.status_code == status
    assert isinstance(error.body, dict), error.body
    assert set(error.body) == {"message", "type", "param", "code"}
    assert error.type == openai_error_type(status)
    assert error.body["code"] in (status, error.code)  # the status, or a symbolic code
    assert error.body["message"] and "{" not in error.body["message"]


async def test_gateway_errors_raise_the_sdk_exception_for_their_status(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1, extra=["--max-num-seqs", "1"])
    config = tmp_path / "config"
    config.mkdir()
    (config / "gateway.yaml").write_text(CONFIG)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    gw = start_gateway(procs, config, "--saturation-queue", "1", "--max-body-bytes", "4096")
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    empty = openai.AsyncOpenAI(base_url=f"{gw.url}/empty/v1", api_key="unused", max_retries=0)
    try:
        # No route: the gateway's own 404 (it used to be a replica's {"detail":"Not Found"}).
        with pytest.raises(openai.NotFoundError) as not_found:
            await client.embeddings.create(model="/model/llama2", input="hello")
        assert_openai_shaped(not_found.value, 404)
        assert "No route matches POST" in not_found.value.message

        with pytest.raises(openai.BadRequestError) as bad:
            await client.completions.create(model="/model/llama2", prompt="hi",
                                            extra_body={"model": 5})
        assert_openai_shaped(bad.value, 400)
        assert bad.value.param == "model"

        with pytest.raises(openai.APIStatusError) as too_large:
            await client.completions.create(model="/model/llama2", prompt="x" * 5000)
        assert_openai_shaped(too_large.value, 413)

        # Envoy's plain-text local reply (kept byte for byte): still the SDK's class by status.
        with pytest.raises(openai.InternalServerError) as unavailable:
            await empty.completions.create(model="/model/llama2", prompt="hi")
        assert unavailable.value.status_code == 503
        assert unavailable.value.body == "no healthy upstream"

        await _saturated_pool_sheds(gw, client)
    finally:
        await client.close()
        await empty.close()


async def _saturated_pool_sheds(gw: RunningGateway, client: openai.AsyncOpenAI) -> None:
    async with aiohttp.ClientSession() as s:
        body = {"model": "critical-model", "prompt": "hog", "max_tokens": 1500, "ignore_eos": True}
        hogs = [asyncio.create_task(s.post(f"{gw.url}/v1/completions", json=body))
                for _ in range(3)]
        try:
            for _ in range(200):  # until the replica's queue shows in the gateway's signals
                async with s.get(f"{gw.admin}/status") as r:
                    endpoint = (await r.json())["pools"]["default/pool"]["endpoints"][0]
                if endpoint.get("waiting", 0) >= 1:
                    break
                await asyncio.sleep(0.05)
            with pytest.raises(openai.RateLimitError) as shed:
                await client.completions.create(model="sheddable-model", prompt="x", max_tokens=1)
            assert_openai_shaped(shed.value, 429)
            assert shed.value.message.endswith("system saturated, sheddable request dropped")
        finally:
            for hog in hogs:
                hog.cancel()
            for hog in hogs:
                with contextlib.suppress(asyncio.CancelledError):
                    (await hog).close()


async def test_router_errors_raise_the_sdk_exception_for_their_status(
        procs: ProcessGroup, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("tester: sk-test\n")
    router = start_router(procs, OVERFLOW="reject", MAX_CONCURRENCY="1",
                          SIMULATED_LATENCY_MS="3000", MAX_BODY_BYTES="2048",
                          API_KEYS_FILE=str(keys))
    client = openai.AsyncOpenAI(base_url=router.url, api_key="sk-test", max_retries=0)
    stranger = openai.AsyncOpenAI(base_url=router.url, api_key="sk-wrong", max_retries=0)

    async def infer(c: openai.AsyncOpenAI, body: dict[str, Any]) -> object:
        return await c.post("/infer", body=body, cast_to=object)

    try:
        with pytest.raises(openai.BadRequestError) as bad:
            await infer(client, {"max_tokens": 3})
        assert_openai_shaped(bad.value, 400)
        assert bad.value.param == "prompt"

        with pytest.raises(openai.AuthenticationError) as unauthenticated:
            await infer(stranger, {"prompt": "hi"})
        assert_openai_shaped(unauthenticated.value, 401)

        with pytest.raises(openai.NotFoundError) as not_found:
            await client.completions.create(model="m", prompt="hi")
        assert_openai_shaped(not_found.value, 404)
        assert "POST /completions is not served here" in not_found.value.message

        with pytest.raises(openai.APIStatusError) as too_large:
            await infer(client, {"prompt": "x" * 4000})
        assert_openai_shaped(too_large.value, 413)

        running = asyncio.create_task(infer(client, {"prompt": "slow"}))
        await asyncio.sleep(0.5)
        with pytest.raises(openai.RateLimitError) as limited:
            await infer(client, {"prompt": "one too many"})
        assert_openai_shaped(limited.value, 429)
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await client.close()
        await stranger.close()

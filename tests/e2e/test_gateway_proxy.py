"""The gateway's proxy end to end: streaming, disconnects, client errors, model rewrite, reload."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1_YAML,
    Fleet,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

GATEWAY = GATEWAY_YAML + """\
""" + POOL_V1_YAML + """\
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: tweets, namespace: default}
spec:
  modelName: tweets
  criticality: Standard
  poolRef: {name: pool, group: inference.networking.k8s.io, kind: InferencePool}
  targetModels: [{name: tweet-summary-1, weight: 100}]
"""

ROUTE = """\
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
"""


def _config(tmp_path: Path, fleet: Fleet, route: str = ROUTE) -> Path:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "gateway.yaml").write_text(GATEWAY + route)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    return config


async def _running(session: aiohttp.ClientSession, fleet: Fleet) -> float:
    total = 0.0
    for url in fleet.urls:
        async with session.get(f"{url}/metrics") as r:
            text = await r.text()
        for fam in text_string_to_metric_families(text):
            if fam.name == "vllm:num_requests_running":
                total += sum(s.value for s in fam.samples)
    return total


@pytest.fixture
def fleet(procs: ProcessGroup) -> Fleet:
    return start_fleet(procs, 2, loras=["tweet-summary-1=/adapters/tweet-summary-1"],
                       time_scale=1.0)


async def test_openai_sdk_streaming_and_not_through_the_gateway(procs: ProcessGroup, fleet: Fleet,
                                                                tmp_path: Path) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet))
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    try:
        done = await client.chat.completions.create(
            model="/model/llama2", messages=[{"role": "user", "content": "hello"}], max_tokens=8,
        )
        assert done.choices[0].finish_reason == "length"
        assert done.usage is not None and done.usage.completion_tokens == 8

        stream = await client.chat.completions.create(
            model="/model/llama2", messages=[{"role": "user", "content": "hello"}], max_tokens=12,
            stream=True, stream_options={"include_usage": True},
        )
        chunks = [c async for c in stream]
        assert chunks[0].choices[0].delta.role == "assistant"
        finishing = [c for c in chunks if c.choices and c.choices[0].finish_reason]
        assert [c.choices[0].finish_reason for c in finishing] == ["length"]
        assert chunks[-1].choices == [] and chunks[-1].usage is not None
        assert chunks[-1].usage.completion_tokens == 12

        # InferenceModel: `tweets` is rewritten to its target model before it goes upstream.
        rewritten = await client.completions.create(model="tweets", prompt="hi", max_tokens=4)
        assert rewritten.model == "tweet-summary-1"
    finally:
        await client.close()


async def test_models_list_adds_the_pools_inference_models(procs: ProcessGroup, fleet: Fleet,
                                                           tmp_path: Path) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet))
    client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="unused", max_retries=0)
    try:
        models = [m.id async for m in client.models.list()]
    finally:
        await client.close()
    # The model server's base model and adapter, plus the InferenceModel clients may ask for.
    assert models == ["/model/llama2", "tweet-summary-1", "tweets"]


async def test_sse_bytes_pass_through_unchanged(procs: ProcessGroup, fleet: Fleet,
                                                tmp_path: Path) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet))
    body = {"model": "/model/llama2", "prompt": "abc", "max_tokens": 5, "stream": True}
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/completions", json=body) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        raw = await r.read()
    frames = raw.split(b"\n\n")
    assert frames[-1] == b"" and frames[-2] == b"data: [DONE]"
    assert all(f.startswith(b"data: {") for f in frames[:-2])
    assert len(frames[:-2]) == 5


async def test_client_disconnect_cancels_the_upstream_request(procs: ProcessGroup, fleet: Fleet,
                                                              tmp_path: Path) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet))
    body = {"model": "/model/llama2", "prompt": "tell a long story", "max_tokens": 900,
            "stream": True}
    async with aiohttp.ClientSession() as s:
        r = await s.post(f"{gw.url}/v1/completions", json=body)
        assert r.status == 200
        await r.content.readuntil(b"\n\n")
        assert await _running(s, fleet) == 1
        r.close()  # drop the connection mid-stream
        deadline = time.monotonic() + 5
        while await _running(s, fleet) != 0:
            assert time.monotonic() < deadline, "the simulator still runs the abandoned request"
            await asyncio.sleep(0.05)


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        pytest.param(b'{"model": "/model/llama2", "prompt": ', 400, "Malformed JSON", id="bad-json"),
        pytest.param(b'{"prompt": "hi"}', 400, "no `model`", id="missing-model"),
        pytest.param(b'{"model": 7, "prompt": "hi"}', 400, "`model` must be a string", id="model-type"),
        pytest.param(b'["not", "an", "object"]', 400, "JSON object", id="not-object"),
        pytest.param(b'{"model": "x", "prompt": "' + b"a" * 3000 + b'"}', 413, "larger than",
                     id="oversized"),
    ],
)
async def test_client_errors_in_openai_shape(procs: ProcessGroup, fleet: Fleet, tmp_path: Path,
                                             body: bytes, status: int, needle: str) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet), "--max-body-bytes", "2048")
    async with aiohttp.ClientSession() as s, s.post(
        f"{gw.url}/v1/completions", data=body, headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == status
        payload = await r.json()
    assert set(payload["error"]) == {"message", "type", "param", "code"}
    assert needle in payload["error"]["message"]
    assert payload["error"]["code"] == status


async def test_an_oversized_chunked_body_and_malformed_http_are_refused(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet), "--max-body-bytes", "2048")

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"model": "/model/llama2", "prompt": "'
        for _ in range(10):
            yield b"a" * 500
        yield b'"}'

    async with aiohttp.ClientSession() as s, s.post(
        f"{gw.url}/v1/completions", data=chunks(), headers={"Content-Type": "application/json"}
    ) as r:
        assert r.status == 413 and r.headers["Connection"] == "close"
        assert "larger than the gateway's limit of 2048 bytes" in (await r.json())["error"]["message"]
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    try:
        writer.write(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 Bad Request")
    assert b"Malformed HTTP request" in body


async def test_unknown_path_prefix_is_404_and_client_destination_header_is_ignored(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = start_gateway(procs, _config(tmp_path, fleet))
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{gw.url}/admin/faults") as r:
            assert r.status == 404
        # A client cannot steer the request to an address of its choosing.
        headers = {"x-gateway-destination-endpoint": "127.0.0.1:1"}
        async with s.post(f"{gw.url}/v1/completions", headers=headers,
                          json={"model": "/model/llama2", "prompt": "x", "max_tokens": 1}) as r:
            assert r.status == 200


async def test_broken_reload_keeps_serving_and_a_good_one_applies(procs: ProcessGroup,
                                                                  fleet: Fleet,
                                                                  tmp_path: Path) -> None:
    config = _config(tmp_path, fleet)
    gw = start_gateway(procs, config)
    req = {"model": "/model/llama2", "prompt": "x", "max_tokens": 1}
    async with aiohttp.ClientSession() as s:
        (config / "broken.yaml").write_text("apiVersion: v1\nkind: [unclosed\n")
        await _wait_for_reload(s, gw.admin, "rejected")
        async with s.post(f"{gw.url}/v1/completions", json=req) as r:
            assert r.status == 200

        (config / "broken.yaml").unlink()
        (config / "gateway.yaml").write_text(GATEWAY + ROUTE.replace("value: /v1", "value: /v2"))
        # Deleting broken.yaml and rewriting gateway.yaml may reload once or twice: wait for the
        # route change itself to take effect.
        deadline = time.monotonic() + 10
        while True:
            async with s.post(f"{gw.url}/v1/completions", json=req) as r:
                if r.status == 404:
                    break
            assert time.monotonic() < deadline, "the good configuration was never applied"
            await asyncio.sleep(0.1)
        await _wait_for_reload(s, gw.admin, "applied")


async def _wait_for_reload(s: aiohttp.ClientSession, admin: str, result: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with s.get(f"{admin}/metrics") as r:
            text = await r.text()
        for fam in text_string_to_metric_families(text):
            if fam.name == "poolgate_config_reloads":
                for sample in fam.samples:
                    if sample.name.endswith("_total") and sample.labels.get("result") == result \
                            and sample.value >= 1:
                        return
        await asyncio.sleep(0.1)
    raise AssertionError(f"no {result} reload seen")

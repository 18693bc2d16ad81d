"""`poolgate sim` as a real process: the OpenAI SDK, wire formats, errors, models, LoRA, metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiohttp
import openai
import pytest
import yaml
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e._sim_fleet import capture, start_sim
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say something nice."}]
CHAT = {"model": "tiny-llama", "messages": MESSAGES}


async def test_openai_sdk_on_both_replicas(procs: ProcessGroup, tmp_path: Path) -> None:
    eps = tmp_path / "fleet.yaml"
    sim = start_sim(procs, "--endpoints-file", str(eps), "--endpoints-label", "app=sim")
    doc = yaml.safe_load(eps.read_text())
    assert doc["kind"] == "LocalEndpoints" and doc["apiVersion"] == "poolgate.dev/v1alpha1"
    assert doc["spec"]["labels"] == {"app": "sim"}
    assert [f"http://{a}" for a in doc["spec"]["addresses"]] == sim.urls
    for url in sim.urls:
        async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="none") as client:
            chat = await client.chat.completions.create(
                model="tiny-llama", messages=MESSAGES, max_tokens=6)
            assert chat.choices[0].finish_reason == "length"
            assert chat.usage is not None and chat.usage.completion_tokens == 6
            stream = await client.chat.completions.create(
                model="tiny-llama", messages=MESSAGES, max_tokens=6, stream=True,
                stream_options={"include_usage": True})
            chunks = [c async for c in stream]
            assert chunks[0].choices[0].delta.role == "assistant"
            text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
            assert text == chat.choices[0].message.content  # same prompt, same seed
            assert chunks[-1].choices == [] and chunks[-1].usage is not None
            comp = await client.completions.create(model="tiny-lora", prompt="Once upon",
                                                   max_tokens=5)
            assert comp.model == "tiny-lora" and comp.usage is not None
            cstream = await client.completions.create(model="tiny-llama", prompt="Once upon",
                                                      max_tokens=5, stream=True)
            parts = [c async for c in cstream]
            assert len(parts) == 5 and parts[-1].choices[0].finish_reason == "length"


async def _raw(session: aiohttp.ClientSession, url: str, body: object) -> tuple[int, str, bytes]:
    async with session.post(url, json=body) as resp:
        return resp.status, resp.headers.get("Content-Type", ""), await resp.read()


async def test_sse_wire_format(procs: ProcessGroup) -> None:
    sim = start_sim(procs, replicas=1)
    url = sim.urls[0]
    async with aiohttp.ClientSession() as s:
        status, ctype, body = await _raw(s, f"{url}/v1/chat/completions", {
            **CHAT, "max_tokens": 4, "stream": True, "stream_options": {"include_usage": True}})
        assert (status, ctype) == (200, "text/event-stream; charset=utf-8")
        assert body.endswith(b"data: [DONE]\n\n")
        frames = body.split(b"\n\n")[:-1]
        assert all(f.startswith(b"data: ") for f in frames)
        payloads = [json.loads(f[6:]) for f in frames[:-1]]
        assert payloads[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert [p["choices"][0]["finish_reason"] for p in payloads[1:-1]] == [None] * 3 + ["length"]
        assert payloads[-1]["choices"] == []
        assert payloads[-1]["usage"]["completion_tokens"] == 4
        # Without include_usage the last token chunk carries the fingerprint and [DONE] follows.
        _, _, body = await _raw(s, f"{url}/v1/completions", {
            "model": "tiny-llama", "prompt": "hi", "max_tokens": 3, "stream": True})
        frames = body.split(b"\n\n")[:-1]
        assert frames[-1] == b"data: [DONE]"
        last = json.loads(frames[-2][6:])
        assert last["choices"][0]["finish_reason"] == "length" and "system_fingerprint" in last
        # --stream-interval is 1: one frame per token.
        assert len(frames) == 4


async def test_errors_match_vllm_byte_for_byte(procs: ProcessGroup) -> None:
    sim = start_sim(procs, replicas=1)
    url = sim.urls[0]
    cases: list[tuple[str, str, object]] = [
        ("err_unknown_model.http", "/v1/chat/completions", {**CHAT, "model": "nope"}),
        ("err_unknown_model_stream.http", "/v1/chat/completions",
         {**CHAT, "model": "nope", "stream": True}),
        ("err_unknown_model_completions.http", "/v1/completions", {"model": "nope", "prompt": "x"}),
        ("err_bad_type.http", "/v1/chat/completions", {**CHAT, "temperature": "hot"}),
        ("err_missing_messages.http", "/v1/chat/completions", {"model": "tiny-llama",
                                                               "max_tokens": 5}),
        ("err_negative_max_tokens.http", "/v1/chat/completions", {**CHAT, "max_tokens": -1}),
        ("err_max_tokens_too_large.http", "/v1/chat/completions", {**CHAT, "max_tokens": 5000}),
        ("err_max_tokens_stream.http", "/v1/chat/completions",
         {**CHAT, "max_tokens": 5000, "stream": True}),
        ("err_max_tokens_too_large_completions.http", "/v1/completions",
         {"model": "tiny-llama", "prompt": "x", "max_tokens": 5000}),
        # 4096 characters are 1024 tokens plus BOS: one over the 1024-token context.
        ("err_prompt_too_long.http", "/v1/completions", {"model": "tiny-llama",
                                                         "prompt": "abcd" * 1024}),
    ]
    async with aiohttp.ClientSession() as s:
        for fixture, path, body in cases:
            status, ctype, got = await _raw(s, url + path, body)
            assert (status, got) == capture(fixture), fixture
            assert ctype == "application/json", fixture
        async with s.post(f"{url}/v1/chat/completions", data=b'{"model": "x",') as resp:
            assert resp.status == 400
            err = (await resp.json())["error"]
            assert err["type"] == "Bad Request" and "json_invalid" in err["message"]
        async with s.get(f"{url}/v1/nope") as resp:
            assert (resp.status, await resp.read()) == capture("err_404_path.http")
        async with s.get(f"{url}/v1/chat/completions") as resp:
            assert (resp.status, await resp.read()) == capture("err_405_method.http")
            assert resp.headers["allow"] == "POST"


async def test_models_and_runtime_lora(procs: ProcessGroup) -> None:
    sim = start_sim(procs, replicas=1)
    url = sim.urls[0]
    load = {"lora_name": "tiny-lora-2", "lora_path": "/tmp/realvllm/tiny-lora"}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{url}/v1/models") as resp:
            models = await resp.json()
        assert [(m["id"], m["root"], m["parent"], m["max_model_len"]) for m in models["data"]] == [
            ("tiny-llama", "/tmp/realvllm/tiny-llama", None, 1024),
            ("tiny-lora", "/tmp/realvllm/tiny-lora", "tiny-llama", None)]
        async with s.post(f"{url}/v1/load_lora_adapter", json=load) as resp:
            assert (resp.status, await resp.read()) == capture("lora_load.http")
        async with s.post(f"{url}/v1/load_lora_adapter", json=load) as resp:
            assert (resp.status, await resp.read()) == capture("lora_load_duplicate.http")
        async with s.get(f"{url}/v1/models") as resp:
            ids = [m["id"] for m in (await resp.json())["data"]]
        assert ids == ["tiny-llama", "tiny-lora", "tiny-lora-2"]
        status, _, body = await _raw(s, f"{url}/v1/completions",
                                     {"model": "tiny-lora-2", "prompt": "x", "max_tokens": 2})
        assert status == 200 and json.loads(body)["model"] == "tiny-lora-2"
        unload = {"lora_name": "tiny-lora-2"}
        async with s.post(f"{url}/v1/unload_lora_adapter", json=unload) as resp:
            assert (resp.status, await resp.read()) == capture("lora_unload.http")
        async with s.post(f"{url}/v1/unload_lora_adapter", json=unload) as resp:
            assert (resp.status, await resp.read()) == capture("lora_unload_missing.http")
        status, _, body = await _raw(s, f"{url}/v1/completions",
                                     {"model": "tiny-lora-2", "prompt": "x", "max_tokens": 2})
        assert (status, body) == capture("err_unknown_after_unload.http")


async def _metrics(s: aiohttp.ClientSession, url: str) -> dict[str, float]:
    async with s.get(f"{url}/metrics") as resp:
        assert resp.headers["Content-Type"] == "text/plain; version=1.0.0; charset=utf-8"
        text = await resp.text()
    out: dict[str, float] = {}
    for fam in text_string_to_metric_families(text):
        for sample in fam.samples:
            key = sample.name
            if "finished_reason" in sample.labels:
                key += ":" + sample.labels["finished_reason"]
            if sample.name.startswith("vllm:") and "le" not in sample.labels:
                # As in vLLM, only these two families carry no engine label.
                if not sample.name.startswith(("vllm:admission_rejections",
                                               "vllm:lora_requests_info")):
                    assert sample.labels["engine"] == "0", sample
                    assert sample.labels.get("model_name", "tiny-llama") == "tiny-llama", sample
                out[key] = sample.value
    return out


async def test_cached_tokens_and_metrics(procs: ProcessGroup) -> None:
    sim = start_sim(procs, replicas=1)
    url = sim.urls[0]
    prompt = {"model": "tiny-llama", "max_tokens": 2,
              "messages": [{"role": "user", "content": "shared context " * 40}]}
    async with aiohttp.ClientSession() as s:
        first = json.loads((await _raw(s, f"{url}/v1/chat/completions", prompt))[2])
        second = json.loads((await _raw(s, f"{url}/v1/chat/completions", prompt))[2])
        assert first["usage"]["prompt_tokens_details"] is None
        cached = second["usage"]["prompt_tokens_details"]["cached_tokens"]
        n = second["usage"]["prompt_tokens"]
        assert cached == (n - 1) // 16 * 16 > 0
        m = await _metrics(s, url)
    assert m["vllm:request_success_total:length"] == 2
    assert m["vllm:prefix_cache_hits_total"] == cached
    assert m["vllm:prefix_cache_queries_total"] == 2 * n
    assert m["vllm:prompt_tokens_total"] == 2 * n
    assert m["vllm:generation_tokens_total"] == 4
    assert m["vllm:num_requests_running"] == 0
    assert m["vllm:time_to_first_token_seconds_count"] == 2
    assert m["vllm:inter_token_latency_seconds_count"] == 2


async def test_disconnect_frees_capacity_at_once(procs: ProcessGroup) -> None:
    sim = start_sim(procs, replicas=1, time_scale=1.0)
    url = sim.urls[0]
    async with aiohttp.ClientSession() as s:
        body = {**CHAT, "max_tokens": 1000, "stream": True}
        async with s.post(f"{url}/v1/chat/completions", json=body) as resp:
            for _ in range(3):
                await resp.content.readline()
            m = await _metrics(s, url)
            assert m["vllm:num_requests_running"] == 1
            assert m["vllm:kv_cache_usage_perc"] > 0
            resp.close()  # drop the connection mid-stream
        for _ in range(100):
            m = await _metrics(s, url)
            if m["vllm:num_requests_running"] == 0:
                break
            await asyncio.sleep(0.02)
        assert m["vllm:num_requests_running"] == 0
        assert m["vllm:kv_cache_usage_perc"] == 0
        assert sum(v for k, v in m.items() if k.startswith("vllm:request_success_total")) == 0
    # A client going away is not an error: nothing is logged as one (vLLM logs nothing either).
    assert "Traceback" not in sim.proc.output() and "unhandled error" not in sim.proc.output()


async def test_a_write_to_a_closed_connection_is_not_logged_as_an_error(
        caplog: pytest.LogCaptureFixture) -> None:
    """The race the test above may not hit: the connection closes while the simulator is
    writing (aiohttp raises ClientConnectionResetError rather than cancelling the handler)."""
    from aiohttp import web

    from poolgate.sim.server import vllm_errors
    from tests.support.apps import serve_app

    async def handler(request: web.Request) -> web.StreamResponse:
        raise aiohttp.ClientConnectionResetError("Cannot write to closing transport")

    app = web.Application(middlewares=[vllm_errors])
    app.router.add_get("/stream", handler)
    async with serve_app(app) as port, aiohttp.ClientSession() as s, \
            s.get(f"http://127.0.0.1:{port}/stream") as resp:
        assert resp.status == 499
    assert not [r for r in caplog.records if r.levelname == "ERROR"]

"""`poolgate sim` tokenizer, render and SGLang info endpoints over HTTP, as peer routers call them."""

from __future__ import annotations

import aiohttp
import pytest

from tests.e2e._sim_fleet import start_sim
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

MESSAGES = [{"role": "system", "content": "You are a terse assistant. " * 8},
            {"role": "user", "content": "Say something nice."}]


async def test_tokenizer_render_and_info_endpoints(procs: ProcessGroup) -> None:
    sim = start_sim(procs, replicas=1)
    url = sim.urls[0]
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{url}/tokenize", json={"model": "tiny-llama",
                                                   "prompt": "Hello, my name is"}) as r:
            assert r.status == 200 and r.content_type == "application/json"
            body = await r.json()
        # vLLM 0.32 answers {"count","max_model_len","tokens","token_strs"} in that order
        # (reference capture tokenize.http); the ids come from the simulator's tokenizer.
        assert list(body) == ["count", "max_model_len", "tokens", "token_strs"]
        assert body["token_strs"] is None
        assert body["count"] == len(body["tokens"]) and body["max_model_len"] == 1024
        async with s.post(f"{url}/detokenize", json={"tokens": body["tokens"]}) as r:
            assert await r.json() == {"prompt": "<s>Hello, my name is"}
        async with s.post(f"{url}/tokenize", json={"messages": MESSAGES}) as r:
            chat_ids = (await r.json())["tokens"]
        async with s.post(f"{url}/v1/chat/completions/render",
                          json={"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 4}) as r:
            assert r.status == 200
            rendered = await r.json()
        assert rendered["token_ids"] == chat_ids
        assert rendered["sampling_params"]["max_tokens"] == 4
        async with s.post(f"{url}/v1/completions/render",
                          json={"model": "tiny-llama", "prompt": "Hello, my name is"}) as r:
            assert [x["token_ids"] for x in await r.json()] == [body["tokens"]]
        # The generation engine counts the same prompt tokens the render gave.
        async with s.post(f"{url}/v1/chat/completions",
                          json={"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 2}) as r:
            assert (await r.json())["usage"]["prompt_tokens"] == len(chat_ids)
        async with s.post(f"{url}/tokenize", json={"model": "nope", "prompt": "x"}) as r:
            assert r.status == 404
            assert (await r.json())["error"]["type"] == "NotFoundError"
        async with s.post(f"{url}/detokenize", json={"tokens": [10**9]}) as r:
            assert r.status == 400
        async with s.post(f"{url}/tokenize", data=b"{") as r:
            assert r.status == 400
        for path in ("/get_model_info", "/model_info"):
            async with s.get(f"{url}{path}") as r:
                info = await r.json()
                assert info["model_path"] == "/tmp/realvllm/tiny-llama"
                assert info["is_generation"] is True
        for path in ("/get_server_info", "/server_info"):
            async with s.get(f"{url}{path}") as r:
                server = await r.json()
                assert server["context_length"] == 1024 and server["version"] == "0.32.0"
                assert f"http://{server['host']}:{server['port']}" == url

"""poolgate's token ids for a request equal what a real vLLM 0.32 server computes for it.

The precise prefix scorer matches a request's token ids against the blocks vLLM announces, so
one differing id (a BOS too many, a template newline) would make every match miss. Each case is
checked against vLLM's `/tokenize` with the same fields and against the prompt token count of
the real generation request; long prompts also against the token ids of the blocks the server
then announced over its KV-event socket.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import zmq

from poolgate.core.kv_events import BlockStored, decode_batch
from poolgate.scheduling.tokenizer import RequestTokenizer, load_tokenizer
from tests.vllm._server import BLOCK_SIZE, TOPIC, VLLMServer, VLLMSetup, post_json
from tests.vllm.conftest import VLLMFleet

pytestmark = pytest.mark.vllm

LONG = ("Every replica keeps the blocks it computed, and the gateway reads the events that say "
        "which blocks each replica holds, so a request that shares a long prefix goes where "
        "that prefix already is. ") * 3

COMPLETIONS = [
    pytest.param({"prompt": "Hello there, world."}, id="plain"),
    pytest.param({"prompt": "  Grüße aus Köln, 東京 and 🎉\n\nnew lines\tand tabs  "},
                 id="unicode-whitespace"),
    pytest.param({"prompt": ["A single prompt in a list."]}, id="list-of-one"),
    pytest.param({"prompt": "No BOS here.", "add_special_tokens": False}, id="no-special-tokens"),
    pytest.param({"prompt": "<s> text that spells </s> special tokens <|user|>"},
                 id="special-token-text"),
    pytest.param({"prompt": LONG}, id="long"),
]

CHATS = [
    pytest.param({"messages": [{"role": "user", "content": "Hi"}]}, id="user"),
    pytest.param({"messages": [{"role": "system", "content": "Be brief."},
                               {"role": "user", "content": "Explain prefix caching."}]},
                 id="system-user"),
    pytest.param({"messages": [{"role": "user", "content": "One?"},
                               {"role": "assistant", "content": "One."},
                               {"role": "user", "content": "Two? Grüße 東京"}]}, id="multi-turn"),
    pytest.param({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "First part."}, {"type": "text", "text": "Second part."}]}]},
        id="content-parts"),
    pytest.param({"messages": [{"role": "user", "content": "Start a story."},
                               {"role": "assistant", "content": "Once upon"}],
                  "add_generation_prompt": False, "continue_final_message": True},
                 id="continue-final-message"),
    pytest.param({"messages": [{"role": "system", "content": LONG},
                               {"role": "user", "content": "Summarise."}]}, id="long"),
]


@pytest.fixture(scope="module")
def tokenizer(vllm_setup: VLLMSetup) -> RequestTokenizer:
    return load_tokenizer(str(vllm_setup.model))


@pytest.fixture(scope="module")
def server(vllm_fleet: VLLMFleet) -> VLLMServer:
    return vllm_fleet.servers[0]


def _tokenize_body(body: dict[str, Any]) -> dict[str, Any]:
    """The /tokenize request for a completions or chat body (its prompt-shaping fields)."""
    if "messages" in body:
        keep = ("messages", "add_generation_prompt", "continue_final_message")
        return {"model": "tiny", **{k: body[k] for k in keep if k in body}}
    prompt = body["prompt"]
    out = {"model": "tiny", "prompt": prompt[0] if isinstance(prompt, list) else prompt}
    if "add_special_tokens" in body:
        out["add_special_tokens"] = body["add_special_tokens"]
    return out


def _check(server: VLLMServer, tokenizer: RequestTokenizer, body: dict[str, Any],
           path: str) -> list[int]:
    ours = tokenizer.token_ids({"model": "tiny", **body})
    assert ours is not None
    theirs = post_json(f"{server.url}/tokenize", _tokenize_body(body))["tokens"]
    assert ours == theirs
    answer = post_json(f"{server.url}{path}",
                       {"model": "tiny", **body, "max_tokens": 1, "temperature": 0})
    assert answer["usage"]["prompt_tokens"] == len(ours)
    return ours


@pytest.mark.parametrize("body", COMPLETIONS)
def test_completions(server: VLLMServer, tokenizer: RequestTokenizer,
                     body: dict[str, Any]) -> None:
    _check(server, tokenizer, body, "/v1/completions")


@pytest.mark.parametrize("body", CHATS)
def test_chat(server: VLLMServer, tokenizer: RequestTokenizer, body: dict[str, Any]) -> None:
    _check(server, tokenizer, body, "/v1/chat/completions")


def _stored_blocks(sub: zmq.Socket[bytes], quiet: float = 1.0) -> list[BlockStored]:
    out: list[BlockStored] = []
    wait = 15.0
    while sub.poll(int(wait * 1000)):
        _, _, payload = sub.recv_multipart()
        out += [e for e in decode_batch(payload).events if isinstance(e, BlockStored)]
        wait = quiet
    return out


@pytest.mark.parametrize(("body", "path"), [
    pytest.param({"prompt": LONG + "Completion."}, "/v1/completions", id="completion"),
    pytest.param({"messages": [{"role": "system", "content": LONG},
                               {"role": "user", "content": "Chat."}]},
                 "/v1/chat/completions", id="chat"),
])
def test_the_announced_blocks_are_our_token_ids(server: VLLMServer, tokenizer: RequestTokenizer,
                                                body: dict[str, Any], path: str) -> None:
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC.encode())
        sub.connect(server.events_endpoint)
        time.sleep(1.0)  # a PUB drops what it sends before the subscription reaches it
        # A salt of its own keeps this prompt's blocks new to the server's cache.
        salted = {**body, "cache_salt": f"parity-{time.time_ns()}"}
        ours = tokenizer.token_ids({"model": "tiny", **body})
        assert ours is not None and len(ours) >= 3 * BLOCK_SIZE
        post_json(f"{server.url}{path}", {"model": "tiny", **salted, "max_tokens": 1})
        stored = _stored_blocks(sub)
        first = next(e for e in stored if e.parent_block_hash is None)
        full = len(ours) // BLOCK_SIZE * BLOCK_SIZE
        assert list(first.token_ids) == ours[: len(first.token_ids)]
        assert len(first.token_ids) == full
    finally:
        sub.close(linger=0)
        ctx.term()

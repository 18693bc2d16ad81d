"""The simulator's tokenizer endpoints' bodies: ids match the engine's prompt ids exactly."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from poolgate.core.sim_tokens import BOS_TOKEN_ID, encode, render_chat
from poolgate.sim.errors import ApiError
from poolgate.sim.protocol import ChatMessage, ChatRequest, CompletionRequest
from poolgate.sim.tokenization import (
    Detokenize,
    Vocabulary,
    chat_text,
    detokenize,
    model_info,
    render_chat_request,
    render_completion_request,
    server_info,
    tokenize,
)

MESSAGES = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}]


def test_tokenize_prompt_has_vllm_shape_and_engine_ids() -> None:
    body = tokenize({"model": "m", "prompt": "Hello, my name is"}, Vocabulary(), 1024)
    assert list(body) == ["count", "max_model_len", "tokens", "token_strs"]
    assert body["tokens"] == encode("Hello, my name is")
    assert body["count"] == len(body["tokens"]) == 6
    assert body["max_model_len"] == 1024 and body["token_strs"] is None


def test_tokenize_without_special_tokens_and_with_strs() -> None:
    body = tokenize({"prompt": "abcdefg", "add_special_tokens": False,
                     "return_token_strs": True}, Vocabulary(), 64)
    assert body["tokens"] == encode("abcdefg")[1:]
    assert body["token_strs"] == ["abcd", "efg"]
    with_bos = tokenize({"prompt": "abcdefg", "return_token_strs": True}, Vocabulary(), 64)
    assert with_bos["token_strs"] == ["<s>", "abcd", "efg"]
    assert with_bos["tokens"][0] == BOS_TOKEN_ID


def test_tokenize_messages_matches_the_generation_prompt() -> None:
    body = tokenize({"messages": MESSAGES}, Vocabulary(), 1024)
    expected = encode(render_chat((m["role"], m["content"]) for m in MESSAGES))
    assert body["tokens"] == expected
    no_gen = tokenize({"messages": MESSAGES, "add_generation_prompt": False}, Vocabulary(), 1024)
    assert len(no_gen["tokens"]) < len(expected)


def test_chat_text_continue_final_message_leaves_it_open() -> None:
    msgs = [ChatMessage(role="user", content="hi"), ChatMessage(role="assistant", content="Sure")]
    assert chat_text(msgs, continue_final_message=True).endswith("<|assistant|>\nSure")


def test_tokenize_rejects_a_bad_prompt() -> None:
    with pytest.raises(ValidationError):
        tokenize({"prompt": 3}, Vocabulary(), 64)


def test_detokenize_round_trips_what_was_tokenized() -> None:
    vocab = Vocabulary()
    ids = tokenize({"prompt": "The quick brown fox"}, vocab, 64)["tokens"]
    assert detokenize(Detokenize(tokens=ids), vocab) == {"prompt": "<s>The quick brown fox"}
    assert detokenize(Detokenize(tokens=[1000]), vocab)["prompt"] == " the"
    assert detokenize(Detokenize(tokens=[5]), Vocabulary())["prompt"] == "\ufffd"
    with pytest.raises(ApiError) as e:
        detokenize(Detokenize(tokens=[32_000]), vocab)
    assert e.value.status == 400 and e.value.param == "tokens"


def test_vocabulary_is_bounded() -> None:
    vocab = Vocabulary(capacity=3)
    vocab.learn("aaaabbbbccccdddd")
    assert detokenize(Detokenize(tokens=encode("aaaa")[1:]), vocab)["prompt"] == "\ufffd"
    assert detokenize(Detokenize(tokens=encode("dddd")[1:]), vocab)["prompt"] == "dddd"


def test_render_chat_is_a_generate_request() -> None:
    req = ChatRequest.model_validate({"model": "m", "messages": MESSAGES, "max_tokens": 7,
                                      "temperature": 0.5, "stream": True})
    body = render_chat_request(req, "m", Vocabulary(), 1024)
    assert body["token_ids"] == tokenize({"messages": MESSAGES}, Vocabulary(), 1)["tokens"]
    assert body["request_id"].startswith("chatcmpl-") and body["model"] == "m"
    assert body["stream"] is True and body["priority"] == 0 and body["features"] is None
    sp = body["sampling_params"]
    assert sp["max_tokens"] == 7 and sp["temperature"] == 0.5 and sp["top_p"] == 1.0


def test_render_chat_applies_vllm_length_checks() -> None:
    req = ChatRequest.model_validate({"messages": MESSAGES, "max_tokens": 5000})
    with pytest.raises(ApiError) as e:
        render_chat_request(req, "m", Vocabulary(), 1024)
    assert e.value.status == 400


def test_render_completion_gives_one_request_per_prompt() -> None:
    req = CompletionRequest.model_validate({"prompt": ["ab", "cdefgh"]})
    body = render_completion_request(req, "m", Vocabulary(), 1024)
    assert [b["token_ids"] for b in body] == [encode("ab"), encode("cdefgh")]
    assert all(b["sampling_params"]["max_tokens"] == 16 for b in body)
    ids = CompletionRequest.model_validate({"prompt": [1, 2, 3], "max_tokens": 2})
    assert render_completion_request(ids, "m", Vocabulary(), 64)[0]["token_ids"] == [1, 2, 3]
    with pytest.raises(ApiError):
        render_completion_request(CompletionRequest.model_validate({"prompt": []}), "m",
                                  Vocabulary(), 64)


def test_sglang_info_bodies() -> None:
    info = model_info("/models/llama", "llama")
    assert info["model_path"] == "/models/llama" and info["is_generation"] is True
    server = server_info("/models/llama", "llama", "127.0.0.1", 8000, 2048, 32, 8192, 16, "v")
    assert server["context_length"] == 2048 and server["max_total_num_tokens"] == 8192
    assert server["internal_states"][0]["max_running_requests"] == 32

"""Response bodies and chunks have vLLM 0.32's fields, in its order, with its nulls."""

from __future__ import annotations

import json

from poolgate.sim import responses as r
from tests.unit.sim._captures import FIXTURES, capture, capture_json, key_shape, sse_payloads

ENV = r.Envelope("chatcmpl-1", 1, "tiny-llama", "vllm-0.32.0-00000000")
NO_CACHE = r.Usage(11, 3, 0)


def test_chat_completion_fields_match_capture() -> None:
    got = json.loads(r.chat_completion(ENV, "hi", "length", None, NO_CACHE))
    assert key_shape(got) == key_shape(capture_json("chat.http"))
    assert got["usage"]["prompt_tokens_details"] is None


def test_text_completion_fields_match_capture() -> None:
    got = json.loads(r.text_completion(ENV, "hi", "stop", "fix", NO_CACHE))
    assert key_shape(got) == key_shape(capture_json("completions.http"))


def test_cached_tokens_reported_only_on_a_hit() -> None:
    got = json.loads(r.chat_completion(ENV, "hi", "length", None, r.Usage(40, 3, 32)))
    assert got["usage"]["prompt_tokens_details"] == {"cached_tokens": 32}


def _chat_stream(include_usage: bool, continuous: bool) -> list[object]:
    usage = r.Usage(11, 0, 0)
    frames = [r.chat_role_chunk(ENV, usage if continuous else None)]
    for i, (delta, fin) in enumerate([("a", None), ("b", None), ("c", "length")]):
        u = r.Usage(11, i + 1, 0)
        frames.append(r.chat_token_chunk(ENV, delta, fin, None, u if continuous else None,
                                         fingerprint=fin is not None and not include_usage))
    if include_usage:
        frames.append(r.usage_chunk(ENV, "chat.completion.chunk", r.Usage(11, 3, 0)))
    frames.append(r.SSE_DONE)
    return sse_payloads(b"".join(frames))


def test_chat_stream_chunks_match_capture() -> None:
    want = sse_payloads(capture("chat_stream.http")[2])
    got = _chat_stream(include_usage=False, continuous=False)
    assert [key_shape(c) for c in got] == [key_shape(c) for c in want[:2]] + [
        key_shape(want[2])] + [key_shape(want[-1])]


def test_chat_stream_usage_chunks_match_capture() -> None:
    want = sse_payloads(capture("chat_stream_usage.http")[2])
    got = _chat_stream(include_usage=True, continuous=False)
    assert key_shape(got[0]) == key_shape(want[0])
    assert key_shape(got[-2]) == key_shape(want[-2])
    assert key_shape(got[-1]) == key_shape(want[-1])
    assert got[-1]["choices"] == []  # type: ignore[index]


def test_chat_stream_continuous_usage_matches_capture() -> None:
    want = sse_payloads((FIXTURES / "chat_stream_continuous_usage.sse").read_bytes())
    got = _chat_stream(include_usage=True, continuous=True)
    assert [key_shape(c) for c in got] == [key_shape(c) for c in want[:2]] + [
        key_shape(want[2]), key_shape(want[3]), key_shape(want[4])]


def test_completion_stream_chunks_match_capture() -> None:
    want = sse_payloads(capture("completions_stream_usage.http")[2])
    env = r.Envelope("cmpl-1", 1, "tiny-llama", "fp")
    mid = r.completion_token_chunk(env, "x", None, None, None, fingerprint=False)
    last = r.completion_token_chunk(env, "y", "length", None, None, fingerprint=False)
    usage = r.usage_chunk(env, "text_completion", r.Usage(8, 5, 0))
    got = sse_payloads(mid + last + usage)
    assert [key_shape(c) for c in got] == [key_shape(want[0]), key_shape(want[-2]),
                                           key_shape(want[-1])]
    plain = sse_payloads(capture("completions_stream.http")[2])
    final = sse_payloads(r.completion_token_chunk(env, "y", "length", None, None,
                                                  fingerprint=True))
    assert key_shape(final[0]) == key_shape(plain[-1])


def test_sse_framing() -> None:
    assert r.sse(b"{}") == b"data: {}\n\n"
    assert r.SSE_DONE == b"data: [DONE]\n\n"


def test_model_card_matches_capture() -> None:
    want = capture_json("models.http")["data"]
    base = r.model_card("m", "/model", None, 1024, 1, "modelperm-1")
    lora = r.model_card("l", "/lora", "m", None, 1, "modelperm-2")
    assert [key_shape(base), key_shape(lora)] == [key_shape(w) for w in want]
    assert lora["parent"] == "m" and lora["max_model_len"] is None

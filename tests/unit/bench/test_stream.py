from __future__ import annotations

import orjson
import pytest

from poolgate.bench.sse import SSEDecoder
from poolgate.bench.stream import StreamState, is_token_chunk, parse_usage

from ._fixtures import FIXTURES, http_body


def replay(body: bytes) -> StreamState:
    state = StreamState()
    for i, data in enumerate(SSEDecoder().feed(body)):
        state.observe(data, float(i))
    return state


def test_chat_stream_with_usage_counts_tokens_not_the_role_chunk() -> None:
    state = replay(http_body("chat_stream_usage.http"))
    assert state.done and state.error is None
    # Event 0 announces the role; events 1..8 carry the 8 tokens; 9 is usage; 10 is [DONE].
    assert state.token_times == [float(i) for i in range(1, 9)]
    assert state.usage is not None
    assert (state.usage.prompt_tokens, state.usage.completion_tokens) == (11, 8)
    assert state.usage.cached_tokens is None


def test_completions_stream_with_usage() -> None:
    state = replay(http_body("completions_stream_usage.http"))
    assert state.done
    assert len(state.token_times) == 5
    assert state.usage is not None and state.usage.completion_tokens == 5


def test_stream_without_usage_has_token_chunks_only() -> None:
    state = replay(http_body("chat_stream.http"))
    assert state.done and state.usage is None
    assert len(state.token_times) == 8


def test_continuous_usage_agrees_with_token_chunk_detection() -> None:
    """vLLM's per-chunk usage says which chunks carry a token; our detector must agree."""
    events = SSEDecoder().feed((FIXTURES / "chat_stream_continuous_usage.sse").read_bytes())
    previous = 0
    for data in events:
        if data == b"[DONE]":
            continue
        obj = orjson.loads(data)
        usage = parse_usage(obj)
        assert usage is not None and usage.completion_tokens is not None
        if obj["choices"]:
            assert is_token_chunk(obj) == (usage.completion_tokens > previous)
        previous = usage.completion_tokens


def test_cached_tokens_are_read_from_prompt_tokens_details() -> None:
    usage = parse_usage(
        {"usage": {"prompt_tokens": 100, "completion_tokens": 5,
                   "prompt_tokens_details": {"cached_tokens": 64}}}
    )
    assert usage is not None and usage.cached_tokens == 64


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        pytest.param({"choices": []}, False, id="usage-only"),
        pytest.param({"choices": [{"delta": {"role": "assistant", "content": ""}}]}, False, id="role-only"),
        pytest.param({"choices": [{"delta": {"role": "assistant", "content": "Hi"}}]}, True, id="role-with-content"),
        pytest.param({"choices": [{"delta": {}, "finish_reason": "stop"}]}, False, id="empty-finish"),
        pytest.param({"choices": [{"delta": {"tool_calls": [{"index": 0}]}}]}, True, id="tool-call"),
        pytest.param({"choices": [{"delta": {"reasoning_content": "hm"}}]}, True, id="reasoning"),
        pytest.param({"choices": [{"text": ""}]}, True, id="completions-text"),
        pytest.param([], False, id="not-an-object"),
    ],
)
def test_is_token_chunk(chunk: object, expected: bool) -> None:
    assert is_token_chunk(chunk) is expected


def test_error_event_and_garbage_are_recorded() -> None:
    state = StreamState()
    state.observe(b'{"error": {"message": "boom", "type": "x", "param": null, "code": 500}}', 0.0)
    state.observe(b"not json", 1.0)
    assert state.error == "boom"
    other = StreamState()
    other.observe(b"not json", 0.0)
    assert other.error is not None and "unparseable" in other.error

"""Token counts from `usage`: real vLLM 0.32 bodies and streams, and what must count nothing."""

from __future__ import annotations

import pytest

from poolgate.observability.usage import Usage, find_usage
from tests.unit.sim._captures import capture


@pytest.mark.parametrize(("name", "expected"), [
    pytest.param("chat.http", Usage(20, 16), id="chat-body"),
    pytest.param("completions.http", Usage(8, 16), id="completions-body"),
    pytest.param("chat_stream_usage.http", Usage(11, 8), id="chat-stream-include-usage"),
    pytest.param("completions_stream_usage.http", Usage(8, 5), id="completions-stream-include-usage"),
    pytest.param("chat_stream.http", None, id="stream-without-usage"),
    pytest.param("completions_stream.http", None, id="completions-stream-without-usage"),
    pytest.param("err_unknown_model.http", None, id="error-body"),
])
def test_vllm_captures(name: str, expected: Usage | None) -> None:
    assert find_usage(capture(name)[2]) == expected


def test_continuous_usage_stats_counts_the_last_running_total() -> None:
    from tests.unit.sim._captures import FIXTURES
    stream = (FIXTURES / "chat_stream_continuous_usage.sse").read_bytes()
    usage = find_usage(stream)
    assert usage is not None
    # The final usage chunk (choices: []) carries the totals of the whole request.
    last = stream[stream.rfind(b'"usage"'):]
    assert f'"completion_tokens":{usage.completion_tokens}'.encode() in last.replace(b" ", b"")
    assert usage.prompt_tokens == 11


@pytest.mark.parametrize(("data", "expected"), [
    pytest.param(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4, '
                 b'"prompt_tokens_details": {"cached_tokens": 2}}}', Usage(3, 4, 2), id="cached"),
    pytest.param(b'{"usage":{"prompt_tokens":3,"completion_tokens":4,'
                 b'"prompt_tokens_details":null}}', Usage(3, 4), id="details-null"),
    pytest.param(b'{"usage": null}', None, id="null"),
    pytest.param(b'{"usage": {"prompt_tokens": 3, "completion_tok', None, id="cut-off"),
    pytest.param(b'{"usage": {"prompt_tokens": -1, "completion_tokens": 4}}', None, id="negative"),
    pytest.param(b'{"usage": {"prompt_tokens": "3", "completion_tokens": 4}}', None, id="string"),
    pytest.param(b'{"usage": {"prompt_tokens": 3}}', None, id="incomplete"),
    pytest.param(b'{"text": "the \\"usage\\": {\\"prompt_tokens\\": 9}"}', None,
                 id="inside-a-string"),
    pytest.param(b'{"usage": {"prompt_tokens": 3, "completion_tokens": 4}, "x": "\\"usage\\""}',
                 Usage(3, 4), id="key-before-a-string-mention"),
    pytest.param(b"", None, id="empty"),
])
def test_edge_cases(data: bytes, expected: Usage | None) -> None:
    assert find_usage(data) == expected

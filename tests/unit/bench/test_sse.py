from __future__ import annotations

import pytest

from poolgate.bench.sse import SSEDecoder

from ._fixtures import http_body


def feed_all(chunks: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    out: list[bytes] = []
    for c in chunks:
        out.extend(decoder.feed(c))
    out.extend(decoder.close())
    return out


@pytest.mark.parametrize("name", ["chat_stream_usage.http", "completions_stream_usage.http"])
def test_captured_vllm_stream_splits_into_json_events_and_done(name: str) -> None:
    events = feed_all([http_body(name)])
    assert events[-1] == b"[DONE]"
    assert all(e.startswith(b"{") for e in events[:-1])
    assert b'"usage"' in events[-2]


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64])
def test_any_chunking_gives_the_same_events(size: int) -> None:
    body = http_body("chat_stream_usage.http")
    whole = feed_all([body])
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert feed_all(chunks) == whole


@pytest.mark.parametrize("size", [1, 2, 5])
def test_crlf_line_endings_split_anywhere(size: int) -> None:
    body = http_body("completions_stream.http").replace(b"\n", b"\r\n")
    chunks = [body[i : i + size] for i in range(0, len(body), size)]
    assert feed_all(chunks) == feed_all([http_body("completions_stream.http")])


def test_multiline_data_comments_and_other_fields() -> None:
    raw = b": keep-alive\n\nevent: message\nid: 3\ndata: a\ndata:b\n\nretry: 10\n\ndata\n\n"
    assert feed_all([raw]) == [b"a\nb", b""]


def test_unterminated_last_event_is_returned_on_close() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: 1\n\ndata: [DONE]") == [b"1"]
    assert decoder.pending() == b"data: [DONE]"
    assert decoder.close() == [b"[DONE]"]
    assert decoder.close() == []

"""The simulator's tokenizer, shared by the simulator and the gateway's precise prefix scorer."""

from __future__ import annotations

import zlib

from hypothesis import given
from hypothesis import strategies as st

from poolgate.core.sim_tokens import (
    BOS_TOKEN_ID,
    VOCAB_SIZE,
    encode,
    message_text,
    render_chat,
)


def _by_definition(text: str) -> list[int]:
    """BOS, then 2 + crc32 of each 4-character chunk's UTF-8, modulo the vocabulary."""
    return [BOS_TOKEN_ID, *[2 + zlib.crc32(text[i : i + 4].encode()) % (VOCAB_SIZE - 2)
                            for i in range(0, len(text), 4)]]


@given(st.text(max_size=60))
def test_encode_follows_its_definition_for_any_text(text: str) -> None:
    assert encode(text) == _by_definition(text)


def test_encode_ascii_and_non_ascii() -> None:
    assert encode("") == [BOS_TOKEN_ID]
    assert len(encode("abcdefghi")) == 1 + 3
    assert encode("héllo wörld") == _by_definition("héllo wörld")
    assert all(2 <= t < VOCAB_SIZE for t in encode("the quick brown fox")[1:])


def test_chat_template_and_message_text() -> None:
    assert render_chat([("system", "be brief"), ("user", "hi")]) == (
        "<|system|>\nbe brief</s>\n<|user|>\nhi</s>\n<|assistant|>\n")
    assert message_text(None) == ""
    assert message_text("x") == "x"
    assert message_text([{"type": "text", "text": "a"}, {"type": "image_url"}, "junk",
                         {"type": "text", "text": "b"}]) == "ab"

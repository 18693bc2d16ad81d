"""The simulator's tokenizer: a deterministic stand-in for a model's (no vocabulary files).

Prompts count about one token per four characters plus a BOS token, like a Llama tokenizer on
English text; chat messages go through a small template so roles and contents both count.

It lives in `core` because two layers need the same ids: the simulator (`poolgate sim`), whose
engine caches blocks of them and publishes them in its KV events, and the gateway's precise
prefix scorer, which must tokenize a request exactly as the simulated server will.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any

BOS_TOKEN_ID = 1
VOCAB_SIZE = 32_000
CHARS_PER_TOKEN = 4
# What the chat template appends so the model answers as the assistant.
GENERATION_PROMPT = "<|assistant|>\n"
_ID_SPAN = VOCAB_SIZE - 2


def encode(text: str) -> list[int]:
    """Token ids of `text`: BOS, then one id per 4-character chunk."""
    data = text.encode()
    crc = zlib.crc32
    if len(data) == len(text):
        # ASCII: characters are bytes, so the chunks can be cut from one encoded string.
        return [BOS_TOKEN_ID,
                *[2 + crc(data[i : i + CHARS_PER_TOKEN]) % _ID_SPAN
                  for i in range(0, len(data), CHARS_PER_TOKEN)]]
    return [BOS_TOKEN_ID,
            *[2 + crc(text[i : i + CHARS_PER_TOKEN].encode()) % _ID_SPAN
              for i in range(0, len(text), CHARS_PER_TOKEN)]]


def render_chat(messages: Iterable[tuple[str, str]]) -> str:
    """The prompt text a simple chat template makes of (role, content) pairs, ending with the
    generation prompt."""
    parts = [f"<|{role}|>\n{content}</s>\n" for role, content in messages]
    parts.append(GENERATION_PROMPT)
    return "".join(parts)


def message_text(content: Any) -> str:
    """The text the template uses of a message's `content`: the string, or the `text` of each
    part of a list joined without separator (None: empty)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content)

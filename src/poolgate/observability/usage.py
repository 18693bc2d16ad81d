"""Token counts from the `usage` object an OpenAI-compatible model server reports.

A non-streamed completion carries `usage` in its JSON body; a stream carries it in its last
data event before `[DONE]` only when the client asked for it (`stream_options.include_usage`;
vLLM then sends `{"choices": [], "usage": {...}}`, and with `continuous_usage_stats` a running
`usage` on every chunk, of which the last is the total). Without `usage` nothing is counted:
the gateway does not tokenize or guess.

Only the last `"usage"` key is looked at and only its object is parsed (with orjson), so a
long body is never parsed whole: within JSON text the bytes `"usage"` followed by `:` occur
only as a key (a quote inside a string value is always escaped).
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

_KEY = b'"usage"'


class Usage(NamedTuple):
    """What the model server said the request cost, in tokens."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int | None = None  # prompt_tokens_details.cached_tokens, when reported


def find_usage(data: bytes) -> Usage | None:
    """The last `usage` object in `data` (a JSON body, or the end of an SSE stream), or None
    when there is none, it is `null`, cut off, or not made of non-negative integers."""
    key = data.rfind(_KEY)
    while key >= 0:
        found = _object_after(data, key + len(_KEY))
        if found is not None:
            return _usage(found)
        key = data.rfind(_KEY, 0, key)
    return None


def _object_after(data: bytes, i: int) -> bytes | None:
    """The `{...}` value of the key that ends at `i`, or None when the key is not followed by
    `:` and an object (`null`, a string value `"usage"`, or text cut short)."""
    start = data.find(b"{", i)
    if start < 0 or data[i:start].strip() != b":":
        return None
    end = data.find(b"}", start)
    if end < 0:
        return None
    if data.find(b"{", start + 1, end) >= 0:
        # Nested objects (prompt_tokens_details on a cache hit): match the braces. `usage`
        # holds numbers and objects, never strings with braces; orjson validates the slice.
        depth, pos = 1, start + 1
        while depth:
            close = data.find(b"}", pos)
            if close < 0:
                return None
            depth += data.count(b"{", pos, close) - 1
            pos = close + 1
        end = pos - 1
    return data[start:end + 1]


def _usage(raw: bytes) -> Usage | None:
    try:
        obj = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    prompt = obj.get("prompt_tokens")
    completion = obj.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int or prompt < 0 or completion < 0:
        return None
    details = obj.get("prompt_tokens_details")
    if details is None:
        return Usage(prompt, completion)
    cached = details.get("cached_tokens") if type(details) is dict else None
    if type(cached) is not int or cached < 0:
        cached = None
    return Usage(prompt, completion, cached)

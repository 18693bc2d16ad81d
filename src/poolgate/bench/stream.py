"""Reading OpenAI-style response payloads: token-bearing chunks, usage, in-stream errors, [DONE]."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

DONE = b"[DONE]"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts reported by the server (`usage` and `usage.prompt_tokens_details`)."""

    prompt_tokens: int | None
    completion_tokens: int | None
    cached_tokens: int | None  # None when the server does not report prompt_tokens_details


def parse_usage(obj: Any) -> Usage | None:
    """The `usage` of a response or chunk object, or None when absent."""
    if not isinstance(obj, dict):
        return None
    usage = obj.get("usage")
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(
        prompt_tokens=_int_or_none(usage.get("prompt_tokens")),
        completion_tokens=_int_or_none(usage.get("completion_tokens")),
        cached_tokens=_int_or_none(cached),
    )


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def is_token_chunk(obj: Any) -> bool:
    """Whether a streamed chunk carries generated output (and so counts for TTFT and ITL).

    Completions chunks carry `text`; chat chunks carry `delta.content` (even "" — vLLM sends
    a token that decodes to an incomplete character that way), reasoning or tool calls. A chat
    chunk that only announces `role` with empty content carries no token, and a usage-only chunk
    has no choices.
    """
    if not isinstance(obj, dict):
        return False
    choices = obj.get("choices")
    if not isinstance(choices, list):
        return False
    for choice in choices:
        if not isinstance(choice, dict):
            continue
        if isinstance(choice.get("text"), str):
            return True
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            continue
        if delta.get("tool_calls") or delta.get("reasoning_content") or delta.get("reasoning"):
            return True
        content = delta.get("content")
        if delta.get("role") and not content:
            continue
        if isinstance(content, str):
            return True
    return False


@dataclass(slots=True)
class StreamState:
    """What one streamed response has shown so far; fed one SSE data payload at a time."""

    token_times: list[float] = field(default_factory=list)
    usage: Usage | None = None
    done: bool = False
    error: str | None = None
    events: int = 0

    def observe(self, data: bytes, now: float) -> None:
        """Account for one event's data received at `now` (perf_counter seconds)."""
        self.events += 1
        if data == DONE:
            self.done = True
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            self.error = self.error or f"unparseable stream event: {data[:120]!r}"
            return
        if not isinstance(obj, dict):
            return
        if "error" in obj:
            self.error = self.error or error_message(obj)
            return
        if is_token_chunk(obj):
            self.token_times.append(now)
        usage = parse_usage(obj)
        if usage is not None:
            # With continuous usage stats every chunk has usage; the last one is the total.
            self.usage = usage


def error_message(obj: Any) -> str:
    """The message of an OpenAI-shaped error object, or the object itself, shortened."""
    if isinstance(obj, dict):
        err = obj.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            return str(err["message"])[:300]
        if isinstance(err, str):
            return err[:300]
    return orjson.dumps(obj).decode()[:300]

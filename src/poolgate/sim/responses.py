"""Response bodies and SSE chunks, field for field and in the key order of vLLM 0.32."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

VLLM_VERSION = "0.32.0"


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts of one request so far."""

    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int

    def full(self) -> dict[str, Any]:
        """`usage` of a non-streaming response; prompt_tokens_details only on a cache hit."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens": self.completion_tokens,
            "prompt_tokens_details": self._details(),
            "completion_tokens_details": None,
        }

    def final_chunk(self) -> dict[str, Any]:
        """`usage` of the last streaming chunk (`choices: []`)."""
        out: dict[str, Any] = {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens": self.completion_tokens,
        }
        details = self._details()
        if details is not None:
            out["prompt_tokens_details"] = details
        return out

    def continuous(self) -> dict[str, Any]:
        """`usage` on every chunk with `continuous_usage_stats`."""
        return {
            "prompt_tokens": self.prompt_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
            "completion_tokens": self.completion_tokens,
            "completion_tokens_details": None,
        }

    def _details(self) -> dict[str, int] | None:
        return {"cached_tokens": self.cached_tokens} if self.cached_tokens > 0 else None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What every body or chunk of one response repeats."""

    id: str
    created: int
    model: str
    fingerprint: str


def chat_completion(env: Envelope, text: str, finish_reason: str, stop_reason: str | None,
                    usage: Usage) -> bytes:
    """A non-streaming `chat.completion`."""
    return orjson.dumps({
        "id": env.id, "object": "chat.completion", "created": env.created, "model": env.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None,
                        "annotations": None, "audio": None, "function_call": None,
                        "reasoning": None},
            "logprobs": None, "finish_reason": finish_reason, "stop_reason": stop_reason,
            "token_ids": None, "routed_experts": None,
        }],
        "service_tier": None, "system_fingerprint": env.fingerprint, "usage": usage.full(),
        "prompt_logprobs": None, "prompt_token_ids": None, "prompt_text": None,
        "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None,
    })


def text_completion(env: Envelope, text: str, finish_reason: str, stop_reason: str | None,
                    usage: Usage) -> bytes:
    """A non-streaming `text_completion`."""
    return orjson.dumps({
        "id": env.id, "object": "text_completion", "created": env.created, "model": env.model,
        "choices": [{
            "index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason,
            "stop_reason": stop_reason, "token_ids": None, "prompt_logprobs": None,
            "prompt_token_ids": None, "routed_experts": None,
        }],
        "service_tier": None, "system_fingerprint": env.fingerprint, "usage": usage.full(),
        "kv_transfer_params": None, "ec_transfer_params": None, "metrics": None,
    })


def sse(payload: bytes) -> bytes:
    """One server-sent event frame."""
    return b"data: " + payload + b"\n\n"


SSE_DONE = b"data: [DONE]\n\n"


def chat_role_chunk(env: Envelope, usage: Usage | None) -> bytes:
    """The first chat chunk: the assistant role with empty content."""
    body: dict[str, Any] = {
        "id": env.id, "object": "chat.completion.chunk", "created": env.created,
        "model": env.model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                     "logprobs": None, "finish_reason": None}],
    }
    if usage is not None:
        body["usage"] = usage.continuous()
    body["prompt_token_ids"] = None
    body["prompt_text"] = None
    return sse(orjson.dumps(body))


def chat_token_chunk(env: Envelope, delta: str, finish_reason: str | None,
                     stop_reason: str | None, usage: Usage | None, fingerprint: bool) -> bytes:
    """A chat chunk carrying generated text; the last one carries `finish_reason`."""
    choice: dict[str, Any] = {"index": 0, "delta": {"content": delta}, "logprobs": None,
                              "finish_reason": finish_reason}
    if finish_reason is not None:
        choice["stop_reason"] = stop_reason
    choice["token_ids"] = None
    body: dict[str, Any] = {
        "id": env.id, "object": "chat.completion.chunk", "created": env.created,
        "model": env.model, "choices": [choice],
    }
    if usage is not None:
        body["usage"] = usage.continuous()
    if fingerprint:
        body["system_fingerprint"] = env.fingerprint
    return sse(orjson.dumps(body))


def completion_token_chunk(env: Envelope, delta: str, finish_reason: str | None,
                           stop_reason: str | None, usage: Usage | None,
                           fingerprint: bool) -> bytes:
    """A completions chunk carrying generated text; the last one carries `finish_reason`."""
    body: dict[str, Any] = {
        "id": env.id, "object": "text_completion", "created": env.created, "model": env.model,
        "choices": [{"index": 0, "text": delta, "logprobs": None,
                     "finish_reason": finish_reason, "stop_reason": stop_reason,
                     "prompt_token_ids": None, "token_ids": None}],
    }
    if usage is not None:
        body["usage"] = usage.continuous()
    if fingerprint:
        body["system_fingerprint"] = env.fingerprint
    return sse(orjson.dumps(body))


def usage_chunk(env: Envelope, obj: str, usage: Usage) -> bytes:
    """The final usage-only chunk (`stream_options.include_usage`)."""
    return sse(orjson.dumps({
        "id": env.id, "object": obj, "created": env.created, "model": env.model,
        "choices": [], "usage": usage.final_chunk(), "system_fingerprint": env.fingerprint,
    }))


def model_card(model_id: str, root: str, parent: str | None, max_model_len: int | None,
               created: int, perm_id: str) -> dict[str, Any]:
    """One entry of `GET /v1/models`."""
    return {
        "id": model_id, "object": "model", "created": created, "owned_by": "vllm",
        "root": root, "parent": parent, "max_model_len": max_model_len,
        "permission": [{
            "id": perm_id, "object": "model_permission", "created": created,
            "allow_create_engine": False, "allow_sampling": True, "allow_logprobs": True,
            "allow_search_indices": False, "allow_view": True, "allow_fine_tuning": False,
            "organization": "*", "group": None, "is_blocking": False,
        }],
    }

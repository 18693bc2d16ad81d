"""Building an `LLMRequest` from an OpenAI request body, cheaply and without copying the prompt."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from poolgate.scheduling.interfaces import LLMRequest


def lora_of(target_model: str, *, adapters: Collection[str] | None = None,
            base_model: str | None = None) -> str | None:
    """The adapter name when `target_model` is a LoRA adapter, else None.

    `adapters` (the names the pool serves as adapters) decides when given; otherwise any target
    other than `base_model` is taken to be an adapter; with neither, nothing is an adapter.
    """
    if adapters is not None:
        return target_model if target_model in adapters else None
    if base_model is not None and target_model != base_model:
        return target_model
    return None


def _prompt_text(prompt: Any) -> str | None:
    if prompt is None:
        return None
    if isinstance(prompt, str):
        return prompt
    if isinstance(prompt, list):
        if all(isinstance(p, str) for p in prompt):
            # A batch of prompts: they share one endpoint, so their joined text is the prefix.
            return "\x1e".join(prompt)
        if all(isinstance(p, int) for p in prompt):
            return " ".join(map(str, prompt))
    return str(prompt)


def request_from_body(body: Mapping[str, Any], *, target_model: str,
                      adapters: Collection[str] | None = None, base_model: str | None = None,
                      criticality: str | None = None, priority: int | None = None,
                      request_id: str = "") -> LLMRequest:
    """The `LLMRequest` for a parsed `/v1/completions` or `/v1/chat/completions` body.

    `target_model` is the model after the InferenceModel rewrite (see `lora_of` for how the
    adapter is recognised). The chat `messages` list is referenced, not copied.
    """
    messages = body.get("messages")
    return LLMRequest(
        model=target_model,
        lora=lora_of(target_model, adapters=adapters, base_model=base_model),
        prompt_text=_prompt_text(body.get("prompt")),
        messages=messages if isinstance(messages, list) else None,
        criticality=criticality,
        priority=priority if priority is not None else 0,
        request_id=request_id,
        stream=body.get("stream") is True,
        body=body,
    )

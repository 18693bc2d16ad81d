"""The simulator's tokenizer applied to a request body, as `poolgate sim` does before its engine
runs the request (`sim/generation.py`): chat messages through its template, a completions
prompt as text or as token ids."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from poolgate.core.sim_tokens import encode, message_text, render_chat


class SimulatorTokenizer:
    """Token ids exactly as `poolgate sim` computes a request's prompt."""

    name = "simulator"

    def token_ids(self, body: Mapping[str, Any]) -> list[int] | None:
        messages = body.get("messages")
        if isinstance(messages, list):
            pairs: list[tuple[str, str]] = []
            for message in messages:
                if not isinstance(message, Mapping):
                    return None
                pairs.append((str(message.get("role", "")), message_text(message.get("content"))))
            return encode(render_chat(pairs))
        return _completion_prompt(body.get("prompt"))


def _completion_prompt(prompt: Any) -> list[int] | None:
    """The simulator's rule: text, token ids, or a list of one of those."""
    if isinstance(prompt, str):
        return encode(prompt)
    if not isinstance(prompt, list) or not prompt:
        return None
    if all(isinstance(x, int) for x in prompt):
        return list(prompt)
    if len(prompt) != 1:
        return None  # the simulator refuses several prompts in one request
    first = prompt[0]
    if isinstance(first, str):
        return encode(first)
    if isinstance(first, list) and all(isinstance(x, int) for x in first):
        return list(first)
    return None

from __future__ import annotations

from typing import Any

import pytest

from poolgate.scheduling.request import lora_of, request_from_body


@pytest.mark.parametrize(("target", "adapters", "base", "expected"), [
    pytest.param("sql-lora", {"sql-lora"}, None, "sql-lora", id="listed-adapter"),
    pytest.param("llama", {"sql-lora"}, "other", None, id="adapters-list-decides"),
    pytest.param("sql-lora", None, "llama", "sql-lora", id="not-the-base"),
    pytest.param("llama", None, "llama", None, id="the-base"),
    pytest.param("anything", None, None, None, id="no-information"),
])
def test_lora_of(target: str, adapters: set[str] | None, base: str | None,
                 expected: str | None) -> None:
    assert lora_of(target, adapters=adapters, base_model=base) == expected


@pytest.mark.parametrize(("prompt", "expected"), [
    pytest.param("hello", "hello", id="string"),
    pytest.param(["a", "b"], "a\x1eb", id="batch"),
    pytest.param([1, 2, 3], "1 2 3", id="token-ids"),
    pytest.param(None, None, id="absent"),
])
def test_request_from_completions_body(prompt: Any, expected: str | None) -> None:
    body: dict[str, Any] = {"model": "m", "prompt": prompt}
    r = request_from_body(body, target_model="m", criticality="Standard", priority=None,
                          request_id="r1")
    assert (r.prompt_text, r.messages, r.lora, r.priority, r.request_id) == \
        (expected, None, None, 0, "r1")


def test_request_from_chat_body_keeps_messages_by_reference() -> None:
    messages = [{"role": "user", "content": "hi"}]
    r = request_from_body({"model": "x", "messages": messages}, target_model="sql-lora",
                          base_model="llama", priority=-2, criticality="Sheddable")
    assert r.messages is messages
    assert (r.model, r.lora, r.priority, r.criticality) == ("sql-lora", "sql-lora", -2,
                                                            "Sheddable")


@pytest.mark.parametrize(("stream", "expected"), [
    pytest.param(True, True, id="streamed"),
    pytest.param(False, False, id="not-streamed"),
    pytest.param(None, False, id="absent"),
])
def test_request_from_body_notes_streaming(stream: Any, expected: bool) -> None:
    body: dict[str, Any] = {"model": "m", "prompt": "p"}
    if stream is not None:
        body["stream"] = stream
    assert request_from_body(body, target_model="m").stream is expected

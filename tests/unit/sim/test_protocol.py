"""Request validation answers exactly what vLLM 0.32 answers (compared with the captures)."""

from __future__ import annotations

import json

import pytest

from poolgate.sim.errors import ApiError, model_not_found
from poolgate.sim.protocol import ChatRequest, check_lengths, check_n, parse_json, validate
from tests.unit.sim._captures import capture


def _answer(e: ApiError) -> tuple[int, object]:
    return e.status, json.loads(e.body())


@pytest.mark.parametrize(("fixture", "prompt", "max_tokens"), [
    pytest.param("err_max_tokens_too_large.http", 10, 5000, id="max-tokens-over-len"),
    pytest.param("err_negative_max_tokens.http", 10, -1, id="negative"),
    pytest.param("err_prompt_too_long.http", 1025, None, id="prompt-over-len"),
])
def test_length_errors_match_vllm(fixture: str, prompt: int, max_tokens: int | None) -> None:
    status, _, body = capture(fixture)
    with pytest.raises(ApiError) as e:
        check_lengths(prompt, max_tokens, "max_tokens", 1024)
    assert _answer(e.value) == (status, json.loads(body))


def test_prompt_plus_max_tokens_over_len() -> None:
    with pytest.raises(ApiError) as e:
        check_lengths(1000, 100, "max_tokens", 1024)
    assert e.value.status == 400
    assert e.value.param == "max_tokens"
    assert "maximum context length is 1024 tokens" in e.value.message
    assert "(100 > 1024 - 1000)" in e.value.message


def test_default_max_tokens_fills_the_context() -> None:
    assert check_lengths(24, None, "max_tokens", 1024) == 1000
    assert check_lengths(24, 16, "max_tokens", 1024) == 16


@pytest.mark.parametrize(("fixture", "body"), [
    pytest.param("err_bad_type.http",
                 {"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"}],
                  "temperature": "hot"}, id="bad-type"),
    pytest.param("err_missing_messages.http", {"model": "tiny-llama", "max_tokens": 5},
                 id="missing-messages"),
])
def test_schema_errors_match_vllm(fixture: str, body: object) -> None:
    status, _, expected = capture(fixture)
    with pytest.raises(ApiError) as e:
        validate(ChatRequest, body)
    assert _answer(e.value) == (status, json.loads(expected))


def test_malformed_json_names_the_position_like_vllm() -> None:
    status, _, expected = capture("err_bad_json.http")
    raw = b'{"model": "tiny-llama", "messages": [{"role": "user", "content": "hi"} "x"]}'
    with pytest.raises(ApiError) as e:
        parse_json(raw)
    got = json.loads(e.value.body())
    want = json.loads(expected)
    assert e.value.status == status
    assert got["error"]["type"] == want["error"]["type"] == "Bad Request"
    position = raw.index(b'} "x"') + 2
    assert got["error"]["param"] == f"body.{position}"
    assert got["error"]["message"] == want["error"]["message"].replace(
        want["error"]["param"], got["error"]["param"])


@pytest.mark.parametrize("fixture", ["err_unknown_model.http",
                                     "err_unknown_model_completions.http"])
def test_unknown_model_matches_vllm(fixture: str) -> None:
    status, _, expected = capture(fixture)
    assert _answer(model_not_found("nope", ["tiny-llama"])) == (status, json.loads(expected))


def test_n_other_than_one_is_refused() -> None:
    check_n(1)
    with pytest.raises(ApiError) as e:
        check_n(2)
    assert e.value.status == 400 and e.value.param == "n"

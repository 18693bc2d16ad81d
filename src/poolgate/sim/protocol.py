"""Request bodies of the OpenAI endpoints: parsing, schema validation and vLLM's length checks."""

from __future__ import annotations

import json
from typing import Any, Literal, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, ValidationError

from poolgate.core.sim_tokens import message_text
from poolgate.sim.errors import ApiError, parameter_error, validation_error

M = TypeVar("M", bound=BaseModel)


class StreamOptions(BaseModel):
    """`stream_options`: usage reporting in streams."""

    include_usage: bool | None = None
    continuous_usage_stats: bool | None = None


class _Sampling(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = None
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    n: int | None = 1
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    ignore_eos: bool = False
    logprobs: Any = None

    def stop_strings(self) -> tuple[str, ...]:
        """`stop` as a tuple."""
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)


class ChatMessage(BaseModel):
    """One chat message; content may be a string or a list of text parts."""

    model_config = ConfigDict(extra="allow")

    role: str
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        """The message's text content."""
        return message_text(self.content)


class ChatRequest(_Sampling):
    """`POST /v1/chat/completions`."""

    messages: list[ChatMessage]
    max_completion_tokens: int | None = None

    def requested_max_tokens(self) -> tuple[int | None, str]:
        """The client's output limit and the parameter it came from."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens, "max_completion_tokens"
        return self.max_tokens, "max_tokens"


class CompletionRequest(_Sampling):
    """`POST /v1/completions`."""

    prompt: str | list[str] | list[int] | list[list[int]]
    echo: bool | None = False

    def requested_max_tokens(self) -> tuple[int | None, str]:
        """The client's output limit (vLLM's completions default is 16)."""
        return (16 if self.max_tokens is None else self.max_tokens), "max_tokens"


class LoadLoraRequest(BaseModel):
    """`POST /v1/load_lora_adapter`."""

    lora_name: str
    lora_path: str
    load_inplace: bool = False


class UnloadLoraRequest(BaseModel):
    """`POST /v1/unload_lora_adapter`."""

    lora_name: str
    lora_int_id: int | None = None


def _summarize(value: object) -> object:
    if isinstance(value, dict):
        return f"<dict of {len(value)} items>"
    return value


def _errors(e: ValidationError) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for err in e.errors(include_url=False):
        item: dict[str, Any] = {
            "type": err["type"],
            "loc": ".".join(["body", *(str(p) for p in err["loc"])]),
            "msg": err["msg"],
            "input": _summarize(err.get("input")),
        }
        if err.get("ctx"):
            item["ctx"] = {k: str(v) for k, v in err["ctx"].items()}
        out.append(item)
    return out


def parse_json(raw: bytes) -> Any:
    """The request body as JSON, or vLLM's 400 `json_invalid` error naming the byte position."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise validation_error([{
            "type": "json_invalid", "loc": f"body.{e.pos}", "msg": "JSON decode error",
            "input": "<dict of 0 items>", "ctx": {"error": e.msg},
        }]) from None
    except UnicodeDecodeError:
        raise validation_error([{
            "type": "json_invalid", "loc": "body.0", "msg": "JSON decode error",
            "input": "<dict of 0 items>", "ctx": {"error": "invalid utf-8"},
        }]) from None


def validate(model: type[M], data: Any) -> M:
    """`data` as `model`, or vLLM's 400 listing every schema error."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise validation_error(_errors(e)) from None


def check_lengths(prompt_tokens: int, max_tokens: int | None, param: str,
                  max_model_len: int) -> int:
    """vLLM's output/context length checks; returns the effective max_tokens."""
    if max_tokens is not None and max_tokens < 1:
        raise parameter_error(f"{param} must be at least 1, got {max_tokens}.", param, max_tokens)
    if max_tokens is not None and max_tokens > max_model_len:
        raise parameter_error(
            f"{param}={max_tokens} cannot be greater than max_model_len={max_model_len}. "
            "Please request fewer output tokens.", param, max_tokens)
    if prompt_tokens > max_model_len:
        raise parameter_error(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"prompt contains at least {prompt_tokens} input tokens, which exceeds this limit "
            "even without any output tokens. Please reduce the length of the input prompt.",
            "input_tokens", prompt_tokens)
    effective = max_tokens if max_tokens is not None else max(1, max_model_len - prompt_tokens)
    if prompt_tokens + effective > max_model_len:
        raise parameter_error(
            f"'max_tokens' or 'max_completion_tokens' is too large: {effective}. This model's "
            f"maximum context length is {max_model_len} tokens and your request has "
            f"{prompt_tokens} input tokens ({effective} > {max_model_len} - {prompt_tokens}).",
            param, effective)
    return effective


def check_n(n: int | None) -> None:
    """The simulator generates one choice per request."""
    if n is not None and n != 1:
        raise ApiError(400, f"n={n} is not supported by poolgate sim: only n=1 is simulated.",
                       "BadRequestError", "n")


StreamKind = Literal["chat", "completion"]

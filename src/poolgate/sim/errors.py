"""Errors the simulator answers with, in vLLM's exact shapes."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import orjson


class ApiError(Exception):
    """An error answered as `{"error": {"message", "type", "param", "code"}}`."""

    def __init__(self, status: int, message: str, type_: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.param = param

    def body(self) -> bytes:
        """The JSON body vLLM sends for this error."""
        return orjson.dumps(
            {"error": {"message": self.message, "type": self.type, "param": self.param,
                       "code": self.status}}
        )


def bad_request(message: str, param: str | None) -> ApiError:
    """A 400 raised by vLLM's engine-side checks (type `BadRequestError`)."""
    return ApiError(400, message, "BadRequestError", param)


def parameter_error(message: str, param: str, value: object) -> ApiError:
    """vLLM's validation error that names the parameter and its value at the end."""
    return bad_request(f"{message} (parameter={param}, value={value})", param)


def validation_error(errors: list[dict[str, Any]]) -> ApiError:
    """A 400 for a body that does not fit the request schema, formatted like vLLM/FastAPI."""
    n = len(errors)
    lines = [f"{n} validation error{'s' if n != 1 else ''}:"]
    lines += [f"  {e!r}" for e in errors]
    param = errors[0].get("loc") if errors else None
    return ApiError(400, "\n".join(lines), HTTPStatus.BAD_REQUEST.phrase,
                    param if isinstance(param, str) else None)


def model_not_found(model: str, aliases: list[str]) -> ApiError:
    """404 for a model name that is neither a served name nor a loaded adapter."""
    return ApiError(
        404, f"The model `{model}` does not exist. Valid aliases: {', '.join(aliases)}.",
        "NotFoundError", "model",
    )


def queue_full(max_waiting: int) -> ApiError:
    """429 when the waiting queue is at `--max-waiting`."""
    return ApiError(
        429,
        f"The server is overloaded: {max_waiting} requests are already waiting "
        "(max_num_queued_reqs). Please retry later.",
        "TooManyRequestsError",
    )


def injected(status: int) -> ApiError:
    """The error an error-rate fault answers with."""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    type_ = phrase.replace(" ", "").replace("-", "")
    if not type_.endswith("Error"):
        type_ += "Error"
    return ApiError(status, f"Injected fault: {status} {phrase}", type_)


def starting() -> ApiError:
    """503 while the server is not ready (startup delay or an unhealthy fault)."""
    return ApiError(503, "The model server is not ready yet.", "ServiceUnavailableError")

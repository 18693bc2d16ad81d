"""The base of every error the gateway answers itself, and the bodies it writes for them.

Every error is a `PoolgateError` with class attributes `status`, `type` (the OpenAI error
`type`), `code`, `flag` (Envoy's access-log response flag) and `body_format`. Errors that Envoy
answers with a plain-text local reply keep Envoy's exact text in `envoy_text`, so a client that
matches on `reset reason: overflow` keeps working; poolgate's own errors use the OpenAI JSON
shape `{"error": {"message", "type", "param", "code"}}`.

`reply()` turns an error into plain data (`LocalReply`: status, content type, body bytes,
headers); the proxy copies that into its HTTP response, so this module needs no HTTP library.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import orjson

# Envoy's prefix for every local reply about an upstream that failed before response headers.
UPSTREAM_RESET_PREFIX = "upstream connect error or disconnect/reset before headers. "


class BodyFormat(enum.Enum):
    """How an error's body is written."""

    ENVOY_TEXT = "envoy_text"  # Envoy's plain-text local reply, byte for byte
    OPENAI_JSON = "openai_json"  # {"error": {"message", "type", "param", "code"}}


# The error `type` for a status: the openai SDK's exception class for it where it has one
# (openai._client `_make_status_error`), vLLM's names for the 5xx it answers otherwise.
_OPENAI_ERROR_TYPES = {
    400: "BadRequestError",
    401: "AuthenticationError",
    403: "PermissionDeniedError",
    404: "NotFoundError",
    405: "MethodNotAllowedError",
    409: "ConflictError",
    413: "BadRequestError",
    422: "UnprocessableEntityError",
    429: "RateLimitError",
    500: "InternalServerError",
    502: "BadGatewayError",
    503: "ServiceUnavailableError",
    504: "GatewayTimeoutError",
}


def openai_error_type(status: int) -> str:
    """The `type` poolgate's own errors carry for `status` (the gateway's and the router's):
    the openai SDK's exception class name (`BadRequestError`, `NotFoundError`,
    `RateLimitError`, ...), `BadRequestError` / `InternalServerError` for other 4xx / 5xx."""
    return _OPENAI_ERROR_TYPES.get(status,
                                   "BadRequestError" if status < 500 else "InternalServerError")


def openai_error_body(message: str, type_: str, code: int | str,
                      param: str | None = None) -> bytes:
    """The OpenAI error shape as vLLM writes it: `{"error": {"message", "type", "param", "code"}}`."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": param,
                                   "code": code}})


@dataclass(frozen=True, slots=True)
class LocalReply:
    """A response the gateway writes itself: everything the proxy needs, no HTTP types."""

    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def upstream_reset_text(reason: str, *, retried: bool = False) -> str:
    """Envoy's body for an upstream that failed before headers (`reason` is the reset reason)."""
    if retried:
        return f"{UPSTREAM_RESET_PREFIX}retried and the latest reset reason: {reason}"
    return f"{UPSTREAM_RESET_PREFIX}reset reason: {reason}"


class PoolgateError(Exception):
    """An error the gateway answers itself, before any response byte reached the client."""

    status: ClassVar[int] = 500
    type: ClassVar[str] = "InternalServerError"
    code: ClassVar[str | None] = None
    flag: ClassVar[str] = "-"
    body_format: ClassVar[BodyFormat] = BodyFormat.OPENAI_JSON
    # Headers Envoy adds only when its `x-envoy-*` headers are enabled (not suppressed).
    envoy_headers: ClassVar[tuple[tuple[str, str], ...]] = ()
    default_message: ClassVar[str] = "Internal gateway error."

    def __init__(self, message: str | None = None, *,
                 headers: Mapping[str, str] | None = None) -> None:
        self.message = message if message is not None else self.default_message
        self.headers: dict[str, str] = dict(headers or {})
        super().__init__(self.message)

    @property
    def envoy_text(self) -> str | None:
        """The exact plain-text body Envoy sends, or None for an OpenAI JSON error."""
        return self.message if self.body_format is BodyFormat.ENVOY_TEXT else None

    def reply(self, *, envoy_headers: bool = False) -> LocalReply:
        """The response to send; `envoy_headers` adds Envoy's `x-envoy-*` headers."""
        headers = list(self.headers.items())
        if envoy_headers:
            headers.extend(self.envoy_headers)
        if self.body_format is BodyFormat.ENVOY_TEXT:
            return LocalReply(self.status, "text/plain", self.message.encode(), tuple(headers))
        # vLLM puts the numeric status in `code` when there is no symbolic code.
        body = openai_error_body(self.message, self.type,
                                 self.code if self.code is not None else self.status)
        return LocalReply(self.status, "application/json", body, tuple(headers))

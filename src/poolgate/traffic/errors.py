"""Errors the traffic policies raise, each knowing its status, Envoy flag and reply body.

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


class CircuitOverflow(PoolgateError):
    """A circuit-breaker limit refused the request (never retried, never an outlier signal)."""

    status = 503
    type = "ServiceUnavailableError"
    code = "overflow"
    flag = "UO"
    body_format = BodyFormat.ENVOY_TEXT
    envoy_headers = (("x-envoy-overloaded", "true"),)
    default_message = upstream_reset_text("overflow")

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(message)
        # Which limit: max_parallel_requests / max_pending_requests / max_parallel_retries.
        self.reason = reason


class RateLimited(PoolgateError):
    """A local rate-limit rule has no token left."""

    status = 429
    type = "RateLimitError"
    code = "local_rate_limited"
    flag = "RL"
    body_format = BodyFormat.ENVOY_TEXT
    envoy_headers = (("x-envoy-ratelimited", "true"),)
    default_message = "local_rate_limited"


class QueueTimeout(PoolgateError):
    """A request waited in poolgate's admission queue longer than allowed (no Envoy twin)."""

    status = 503
    type = "ServiceUnavailableError"
    code = "queue_timeout"
    flag = "-"
    default_message = "The request waited too long in the gateway's queue; try again later."


class NoHealthyEndpoint(PoolgateError):
    """The backend has no endpoint to send to (none ready, or all ejected outside panic)."""

    status = 503
    type = "ServiceUnavailableError"
    code = "no_healthy_upstream"
    flag = "UH"
    body_format = BodyFormat.ENVOY_TEXT
    default_message = "no healthy upstream"


class UpstreamConnectError(PoolgateError):
    """The connection to the chosen endpoint could not be established."""

    status = 503
    type = "ServiceUnavailableError"
    code = "upstream_connect_error"
    flag = "UF"
    body_format = BodyFormat.ENVOY_TEXT
    default_message = upstream_reset_text("connection failure")

    def __init__(self, message: str | None = None, *, retried: bool = False) -> None:
        super().__init__(message if message is not None
                         else upstream_reset_text("connection failure", retried=retried))


class UpstreamTimeout(PoolgateError):
    """The route (request) timeout fired before the upstream answered."""

    status = 504
    type = "GatewayTimeoutError"
    code = "upstream_request_timeout"
    flag = "UT"
    body_format = BodyFormat.ENVOY_TEXT
    default_message = "upstream request timeout"


class UpstreamReset(PoolgateError):
    """The upstream closed or reset the connection before sending response headers."""

    status = 503
    type = "ServiceUnavailableError"
    code = "upstream_reset"
    flag = "UC"
    body_format = BodyFormat.ENVOY_TEXT
    default_message = upstream_reset_text("connection termination")

    def __init__(self, message: str | None = None, *, retried: bool = False) -> None:
        super().__init__(message if message is not None
                         else upstream_reset_text("connection termination", retried=retried))

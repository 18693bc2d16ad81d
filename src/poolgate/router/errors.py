"""Errors the router answers itself, rendered in the OpenAI error shape, with the same `type`
names as the gateway's (`poolgate.core.errors.openai_error_type`)."""

from __future__ import annotations

from aiohttp import web

from poolgate.core.errors import openai_error_body, openai_error_type

REASON_HEADER = "x-poolgate-reason"


def error_response(status: int, message: str, headers: dict[str, str] | None = None,
                   param: str | None = None) -> web.Response:
    """`{"error": {"message", "type", "param", "code"}}`; `type` names the openai SDK's
    exception for the status (`BadRequestError`, `RateLimitError`, ...), as the gateway's do."""
    body = openai_error_body(message, openai_error_type(status), status, param)
    return web.Response(status=status, body=body, content_type="application/json",
                        headers=headers)


class RouterError(Exception):
    """An error answered before any response byte went out; subclasses set `status`."""

    status: int = 500

    def __init__(self, message: str, *, reason: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason
        self.param = param
        self.headers = dict(headers or {})
        if reason is not None:
            self.headers[REASON_HEADER] = reason

    def to_response(self) -> web.Response:
        return error_response(self.status, self.message, self.headers, self.param)


class InvalidRequest(RouterError):
    """The client sent something /infer cannot take."""

    status = 400


class Unauthenticated(RouterError):
    """No API key, or one API_KEYS_FILE does not list (the message never repeats it)."""

    status = 401


class PayloadTooLarge(RouterError):
    """The body is (or declares to be) over MAX_BODY_BYTES; refused without reading the rest."""

    status = 413

    def to_response(self) -> web.Response:
        response = super().to_response()
        # The unread body is still on its way: this connection cannot carry another request.
        response.force_close()
        return response


class ClientDisconnected(Exception):
    """The client closed the connection before its request was whole: nobody to answer."""


class Overloaded(RouterError):
    """Refused at once because every slot is taken; the client may retry after `Retry-After`."""

    status = 429


class Unavailable(RouterError):
    """The router cannot serve now (queue wait expired, KV store down in closed mode, backend)."""

    status = 503


class BadGateway(RouterError):
    """The backend failed or answered something the router cannot use."""

    status = 502


class BackendTimeout(RouterError):
    """The backend did not answer within BACKEND_TIMEOUT_MS."""

    status = 504

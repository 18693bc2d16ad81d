"""Errors the gateway's proxy answers itself, and turning any gateway error into a response."""

from __future__ import annotations

from typing import ClassVar

from poolgate.core.errors import LocalReply, PoolgateError, openai_error_body
from poolgate.http.server import reason_phrase
from poolgate.proxy.responder import Responder


class NoRoute(PoolgateError):
    """No HTTPRoute rule matches the request (Envoy: `NR`)."""

    status = 404
    type = "NotFoundError"
    flag = "NR"
    default_message = "No route matches the request."


class MethodNotAllowed(PoolgateError):
    """A method the gateway does not forward (TRACE)."""

    status = 405
    type = "MethodNotAllowedError"
    headers_allowed = "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"allow": self.headers_allowed})


class BadRequest(PoolgateError):
    """The client sent a body the gateway cannot route on."""

    status = 400
    type = "BadRequestError"
    param: str | None

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param

    def reply(self, *, envoy_headers: bool = False) -> LocalReply:
        body = openai_error_body(self.message, self.type, self.status, self.param)
        return LocalReply(self.status, "application/json", body, tuple(self.headers.items()))


class BodyTooLarge(PoolgateError):
    """The request body is over `--max-body-bytes`."""

    status = 413
    type = "BadRequestError"


class InvalidBackend(PoolgateError):
    """The route's backendRef could not be resolved (Gateway API: 500)."""

    status = 500
    type = "InternalServerError"


class InternalError(PoolgateError):
    """Anything unexpected: a short message for the client, the traceback for our log."""

    status = 500
    type = "InternalServerError"
    default_message: ClassVar[str] = "Internal gateway error; see the gateway log."


async def send_error(request: Responder, error: PoolgateError, *,
                     envoy_headers: bool = False) -> None:
    """Answer `request` with a gateway error; when a response is already under way the client
    can only learn of the error by the connection closing."""
    if request.started:
        request.abort()
        return
    reply = error.reply(envoy_headers=envoy_headers)
    headers = [("content-type", reply.content_type), *reply.headers]
    await request.respond(reply.status, reason_phrase(reply.status), headers, reply.body)

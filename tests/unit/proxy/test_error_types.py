"""One naming of OpenAI error `type`s for every error poolgate answers itself (issue 16, item
6b): the gateway's `PoolgateError`s and the router's bodies use `openai_error_type`."""

from __future__ import annotations

import orjson
import pytest

# Imported for their PoolgateError subclasses.
import poolgate.auth.errors
import poolgate.balancing.errors
import poolgate.proxy.errors
import poolgate.scheduling.errors
import poolgate.traffic.errors  # noqa: F401
from poolgate.core.errors import PoolgateError, openai_error_type
from poolgate.router.errors import (
    BackendTimeout,
    BadGateway,
    InvalidRequest,
    Overloaded,
    PayloadTooLarge,
    RouterError,
    Unauthenticated,
    Unavailable,
)


def _subclasses(cls: type[PoolgateError]) -> list[type[PoolgateError]]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_subclasses(sub)]
    return out


GATEWAY_ERRORS = _subclasses(PoolgateError)


def test_every_gateway_error_is_found() -> None:
    names = {cls.__name__ for cls in GATEWAY_ERRORS}
    assert {"NoRoute", "BadRequest", "BodyTooLarge", "RequestShed", "NoEndpointAvailable",
            "CircuitOverflow", "RateLimited", "AuthenticationFailed", "AccessDenied",
            "InFlightCapReached", "UpstreamTimeout", "InternalError"} <= names


@pytest.mark.parametrize("cls", GATEWAY_ERRORS, ids=lambda c: c.__name__)
def test_a_gateway_error_type_is_the_one_for_its_status(cls: type[PoolgateError]) -> None:
    assert cls.type == openai_error_type(cls.status)


@pytest.mark.parametrize(("cls", "type_"), [
    (InvalidRequest, "BadRequestError"),
    (Unauthenticated, "AuthenticationError"),
    (PayloadTooLarge, "BadRequestError"),
    (Overloaded, "RateLimitError"),
    (BadGateway, "BadGatewayError"),
    (Unavailable, "ServiceUnavailableError"),
    (BackendTimeout, "GatewayTimeoutError"),
])
def test_router_errors_use_the_gateway_names(cls: type[RouterError], type_: str) -> None:
    response = cls("what went wrong", param="prompt").to_response()
    assert response.body is not None
    assert orjson.loads(bytes(response.body)) == {"error": {
        "message": "what went wrong", "type": type_, "param": "prompt", "code": cls.status}}


@pytest.mark.parametrize(("status", "type_"), [
    (400, "BadRequestError"), (401, "AuthenticationError"), (403, "PermissionDeniedError"),
    (404, "NotFoundError"), (408, "BadRequestError"), (422, "UnprocessableEntityError"),
    (429, "RateLimitError"), (500, "InternalServerError"), (501, "InternalServerError"),
    (503, "ServiceUnavailableError"),
])
def test_openai_error_type(status: int, type_: str) -> None:
    assert openai_error_type(status) == type_

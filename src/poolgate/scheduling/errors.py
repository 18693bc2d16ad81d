"""Errors the scheduling stage raises; each knows its HTTP status and OpenAI error shape."""

from __future__ import annotations

from poolgate.core.errors import PoolgateError

SHED_MESSAGE = "system saturated, sheddable request dropped"


class NoEndpointAvailable(PoolgateError):
    """No candidate endpoint is left for the request (none given, or every one filtered out)."""

    status = 503
    type = "ServiceUnavailableError"
    code = "no_endpoint_available"
    flag = "UH"
    default_message = "no endpoint available for the request"


class RequestShed(PoolgateError):
    """The pool is saturated and the request is sheddable (Sheddable or negative priority)."""

    status = 429
    type = "RateLimitError"
    code = "system_saturated"
    flag = "-"
    default_message = SHED_MESSAGE


class SchedulerConfigError(ValueError):
    """An endpoint-picker configuration is invalid; the message names the plugin and field."""

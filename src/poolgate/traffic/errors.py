"""The errors traffic policies raise (overflow, rate limit, no endpoint, upstream failures).

Each is a `poolgate.core.errors.PoolgateError` whose class attributes give its status, Envoy flag
and reply body.
"""

from __future__ import annotations

from poolgate.core.errors import BodyFormat, PoolgateError, upstream_reset_text


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

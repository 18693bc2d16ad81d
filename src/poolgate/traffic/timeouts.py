"""Per-hop timeouts of a proxied request, and how route and policy settings combine.

Precedence for the whole-request timeout: HTTPRoute `rules[].timeouts.request` wins over
BackendTrafficPolicy `timeout.http.requestTimeout`. When neither is set the total timeout is
None: unlike Envoy (whose routes time out after 15 s unless configured), poolgate never cuts off
a long generation or a stream by default. A value of 0 means "no timeout", as in Gateway API and
Envoy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

DEFAULT_CONNECT_TIMEOUT = 10.0  # seconds; Envoy's cluster connect_timeout default (Envoy Gateway's too)


def _check(name: str, value: float | None, *, allow_none: bool = True) -> None:
    if value is None:
        if not allow_none:
            raise ValueError(f"timeout {name} is required")
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"timeout {name} must be a positive number of seconds, got {value!r}")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Timeouts in seconds of one backend cluster's requests; None means no limit.

    - `connect`: establishing the TCP connection to the endpoint (each attempt).
    - `per_try`: one attempt, from sending the request to the end of its response
      (`retry.perRetry.timeout`); an attempt that exceeds it before a response byte reached the
      client may be retried, one that exceeds it later is cut.
    - `total`: the whole request, all retries and the streamed body included.
    """

    connect: float = DEFAULT_CONNECT_TIMEOUT
    per_try: float | None = None
    total: float | None = None

    def __post_init__(self) -> None:
        _check("connect", self.connect, allow_none=False)
        _check("per_try", self.per_try)
        _check("total", self.total)

    def attempt_deadline(self, now: float, request_deadline: float | None) -> float | None:
        """When an attempt starting at `now` must end: the sooner of its per-try limit and
        the request's deadline."""
        if self.per_try is None:
            return request_deadline
        own = now + self.per_try
        return own if request_deadline is None or own < request_deadline else request_deadline


DEFAULT_TIMEOUTS = Timeouts()


def _request_timeout(name: str, value: float | None) -> float | None:
    """A configured request timeout: None when unset, None for 0 (disabled), else seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a duration >= 0 seconds, got {value!r}")
    return None if value == 0 else float(value)


def resolve_timeouts(route_request_timeout: float | None,
                     policy_request_timeout: float | None,
                     defaults: Timeouts = DEFAULT_TIMEOUTS, *,
                     connect: float | None = None, per_try: float | None = None) -> Timeouts:
    """The timeouts for one request of a route rule.

    `route_request_timeout` is HTTPRoute `timeouts.request`, `policy_request_timeout` is
    BackendTrafficPolicy `timeout.http.requestTimeout` (seconds, None when unset, 0 to disable).
    The route's value wins when set (its 0 disables the policy's too). `connect`, when given
    (BackendTrafficPolicy `timeout.tcp.connectTimeout` or the command line), replaces
    `defaults.connect`; `per_try` (`retry.perRetry.timeout`) replaces `defaults.per_try`.
    """
    if route_request_timeout is not None:
        total = _request_timeout("HTTPRoute timeouts.request", route_request_timeout)
    elif policy_request_timeout is not None:
        total = _request_timeout("timeout.http.requestTimeout", policy_request_timeout)
    else:
        total = defaults.total
    return replace(defaults, total=total,
                   connect=defaults.connect if connect is None else connect,
                   per_try=defaults.per_try if per_try is None else per_try)

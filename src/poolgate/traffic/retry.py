"""Retry decisions with Envoy's semantics (`BackendTrafficPolicy.spec.retry`).

Defaults are Envoy Gateway's when `retry` is present: 2 retries, triggers
`connect-failure, refused-stream, unavailable, cancelled, retriable-status-codes`, retriable
status codes [503], back-off base 25 ms and max 10x base, a different endpoint preferred.

Which outcome each trigger retries (Envoy's router):

| trigger                  | retries                                                           |
| ------------------------ | ----------------------------------------------------------------- |
| `5xx`                    | any 5xx status, and every failure without a response (incl. timeout) |
| `gateway-error`          | 502, 503, 504, and every failure without a response (incl. timeout)  |
| `reset`                  | every failure without a response (not the per-try timeout)         |
| `connect-failure`        | a failed connection attempt                                        |
| `reset-before-request`   | a failed connection attempt (the request was never sent)           |
| `refused-stream`         | an HTTP/2 REFUSED_STREAM                                           |
| `retriable-4xx`          | 409                                                                |
| `retriable-status-codes` | the statuses in `http_status_codes`                                |
| gRPC triggers            | a `grpc-status` this HTTP gateway never sees: no match             |

Never retried: a circuit-breaker overflow, and any attempt whose response already sent a byte
to the client.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


class Trigger(enum.StrEnum):
    """Envoy Gateway `retryOn.triggers` values."""

    FIVE_XX = "5xx"
    GATEWAY_ERROR = "gateway-error"
    RESET = "reset"
    RESET_BEFORE_REQUEST = "reset-before-request"
    CONNECT_FAILURE = "connect-failure"
    RETRIABLE_4XX = "retriable-4xx"
    REFUSED_STREAM = "refused-stream"
    RETRIABLE_STATUS_CODES = "retriable-status-codes"
    CANCELLED = "cancelled"
    DEADLINE_EXCEEDED = "deadline-exceeded"
    INTERNAL = "internal"
    RESOURCE_EXHAUSTED = "resource-exhausted"
    UNAVAILABLE = "unavailable"


class FailureKind(enum.StrEnum):
    """Why an attempt ended without a response; values are Envoy's reset-reason words."""

    CONNECT_FAILURE = "connection failure"
    RESET = "connection termination"
    TIMEOUT = "timeout"  # the per-try timeout fired
    REFUSED_STREAM = "refused stream"
    OVERFLOW = "overflow"


DEFAULT_NUM_RETRIES = 2
DEFAULT_TRIGGERS: frozenset[Trigger] = frozenset({
    Trigger.CONNECT_FAILURE, Trigger.REFUSED_STREAM, Trigger.UNAVAILABLE, Trigger.CANCELLED,
    Trigger.RETRIABLE_STATUS_CODES,
})
DEFAULT_STATUS_CODES: frozenset[int] = frozenset({503})
DEFAULT_BACKOFF_BASE = 0.025  # seconds
GATEWAY_ERROR_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How one upstream attempt ended: a status, or a failure before any response."""

    status: int | None = None
    failure: FailureKind | str | None = None
    response_started: bool = False  # a response byte already reached the client


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """The retry settings (`BackendTrafficPolicy.spec.retry`), Envoy Gateway's defaults filled in.

    `triggers` and `http_status_codes` accept any iterable (stored as frozensets); an empty
    `triggers` retries nothing. `backoff_max` None means 10 x `backoff_base` (Envoy's default).
    Raises ValueError for a setting Envoy would refuse.
    """

    num_retries: int = DEFAULT_NUM_RETRIES
    triggers: frozenset[Trigger] = DEFAULT_TRIGGERS
    http_status_codes: frozenset[int] = DEFAULT_STATUS_CODES
    per_retry_timeout: float | None = None
    backoff_base: float = DEFAULT_BACKOFF_BASE
    backoff_max: float | None = None

    def __post_init__(self) -> None:
        num = self.num_retries
        if isinstance(num, bool) or not isinstance(num, int) or num < 0:
            raise ValueError(f"retry num_retries must be an integer >= 0, got {num!r}")
        try:
            triggers = frozenset(Trigger(t) for t in self.triggers)
        except ValueError:
            known = ", ".join(t.value for t in Trigger)
            raise ValueError(f"retry triggers {sorted(self.triggers)} contain an unknown value; "
                             f"known: {known}") from None
        object.__setattr__(self, "triggers", triggers)
        codes = frozenset(int(c) for c in self.http_status_codes)
        for code in codes:
            if not 100 <= code <= 599:
                raise ValueError(f"retry http_status_codes must be HTTP statuses, got {code}")
        object.__setattr__(self, "http_status_codes", codes)
        if self.per_retry_timeout is not None:
            _positive("per_retry_timeout", self.per_retry_timeout)
        _positive("backoff_base_interval", self.backoff_base)
        if self.backoff_max is None:
            object.__setattr__(self, "backoff_max", 10 * self.backoff_base)
        else:
            _positive("backoff_max_interval", self.backoff_max)
            if self.backoff_max < self.backoff_base:
                raise ValueError(f"retry backoff_max_interval ({self.backoff_max}s) must be >= "
                                 f"backoff_base_interval ({self.backoff_base}s)")


class RetryPolicy:
    """Decides whether and when to retry an attempt; pure, no clock, randomness passed in."""

    __slots__ = ("backoff_base", "backoff_max", "http_status_codes", "num_retries",
                 "per_retry_timeout", "spec", "triggers")

    def __init__(self, spec: RetrySpec | None = None) -> None:
        self.spec = spec = spec if spec is not None else RetrySpec()
        self.num_retries = spec.num_retries
        self.triggers = spec.triggers
        self.http_status_codes = spec.http_status_codes
        self.per_retry_timeout = spec.per_retry_timeout
        self.backoff_base = spec.backoff_base
        self.backoff_max: float = spec.backoff_max if spec.backoff_max is not None \
            else 10 * spec.backoff_base

    def should_retry(self, attempt: int, outcome: AttemptOutcome) -> bool:
        """Whether to retry after attempt number `attempt` (0 = the original) ended so."""
        if outcome.response_started or attempt >= self.num_retries:
            return False
        if outcome.failure is not None:
            return self._retries_failure(FailureKind(outcome.failure))
        if outcome.status is None:
            return False
        return self._retries_status(outcome.status)

    def _retries_failure(self, failure: FailureKind) -> bool:
        t = self.triggers
        if failure is FailureKind.OVERFLOW:
            return False  # the breaker said no; retrying would only add load
        if failure is FailureKind.TIMEOUT:
            # Envoy retries a per-try timeout only under 5xx / gateway-error.
            return Trigger.FIVE_XX in t or Trigger.GATEWAY_ERROR in t
        if Trigger.RESET in t or Trigger.FIVE_XX in t or Trigger.GATEWAY_ERROR in t:
            return True
        if failure is FailureKind.CONNECT_FAILURE:
            # The request never left: `reset-before-request` covers it too.
            return Trigger.CONNECT_FAILURE in t or Trigger.RESET_BEFORE_REQUEST in t
        if failure is FailureKind.REFUSED_STREAM:
            return Trigger.REFUSED_STREAM in t
        return False

    def _retries_status(self, status: int) -> bool:
        t = self.triggers
        return ((Trigger.FIVE_XX in t and 500 <= status <= 599)
                or (Trigger.GATEWAY_ERROR in t and status in GATEWAY_ERROR_STATUSES)
                or (Trigger.RETRIABLE_4XX in t and status == 409)
                or (Trigger.RETRIABLE_STATUS_CODES in t and status in self.http_status_codes))

    def backoff(self, attempt: int, rnd: random.Random) -> float:
        """Seconds to wait before the retry that follows attempt `attempt` (0-based).

        Envoy's fully jittered exponential back-off: uniform in [0, min(base * 2**attempt, max)).
        """
        if attempt < 0:
            raise ValueError(f"attempt must be >= 0, got {attempt}")
        ceiling = self.backoff_max if attempt >= 64 else min(self.backoff_base * 2 ** attempt,
                                                             self.backoff_max)
        return rnd.random() * ceiling

    def __repr__(self) -> str:
        triggers = ",".join(sorted(self.triggers))
        codes = ",".join(str(c) for c in sorted(self.http_status_codes))
        return (f"<RetryPolicy num_retries={self.num_retries} triggers={triggers} codes={codes}"
                f" per_retry_timeout={self.per_retry_timeout}"
                f" backoff={self.backoff_base}..{self.backoff_max}>")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) \
            or value <= 0:
        raise ValueError(f"retry {name} must be a positive number of seconds, got {value!r}")


def untried(candidates: Iterable[T], tried: Collection[str],
            key: Callable[[T], str] = str) -> list[T]:
    """The candidates not tried yet for this request, or all of them when every one was tried.

    Envoy Gateway configures Envoy's `previous_hosts` predicate the same way: a retry goes to
    another endpoint while one is left. `key` gives a candidate's address.
    """
    pool = list(candidates)
    fresh = [c for c in pool if key(c) not in tried]
    return fresh or pool

"""Local rate limiting: one token bucket per rule (`BackendTrafficPolicy.spec.rateLimit.local`).

A rule `limit: {requests: N, unit: U}` becomes Envoy's bucket `max_tokens = N`,
`tokens_per_fill = N`, `fill_interval = 1 U`: the bucket starts full, each request takes one
token, and at every whole fill interval (counted from the bucket's first use) N tokens are added,
never above N. A request finding the bucket empty is answered 429 `local_rate_limited`
(`traffic.errors.RateLimited`). Buckets live per gateway process, like Envoy's.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable
from dataclasses import dataclass


class RateUnit(enum.StrEnum):
    """Envoy Gateway's rate-limit units."""

    SECOND = "Second"
    MINUTE = "Minute"
    HOUR = "Hour"
    DAY = "Day"

    @property
    def seconds(self) -> float:
        """The unit's length in seconds."""
        return _UNIT_SECONDS[self]


_UNIT_SECONDS = {RateUnit.SECOND: 1.0, RateUnit.MINUTE: 60.0, RateUnit.HOUR: 3600.0,
                 RateUnit.DAY: 86400.0}


@dataclass(frozen=True, slots=True)
class RateLimitRule:
    """`requests` per `unit_seconds` (`rateLimit.local.rules[].limit`)."""

    requests: int
    unit_seconds: float

    def __post_init__(self) -> None:
        if isinstance(self.requests, bool) or not isinstance(self.requests, int) \
                or self.requests < 0:
            raise ValueError(f"rate limit requests must be an integer >= 0, got {self.requests!r}")
        if not self.unit_seconds > 0:
            raise ValueError(f"rate limit unit must be a positive duration, got {self.unit_seconds!r}")

    @classmethod
    def of(cls, requests: int, unit: str) -> RateLimitRule:
        """A rule from manifest values; `unit` is Second, Minute, Hour or Day."""
        try:
            parsed = RateUnit(unit)
        except ValueError:
            raise ValueError(f"rate limit unit must be one of "
                             f"{', '.join(u.value for u in RateUnit)}, got {unit!r}") from None
        return cls(requests, parsed.seconds)


class TokenBucket:
    """Envoy's token bucket: `max_tokens`, refilled by `tokens_per_fill` every `fill_interval`."""

    def __init__(self, max_tokens: int, tokens_per_fill: int, fill_interval: float) -> None:
        if max_tokens < 0 or tokens_per_fill < 1 or not fill_interval > 0:
            raise ValueError("token bucket needs max_tokens >= 0, tokens_per_fill >= 1, "
                             "fill_interval > 0")
        self.max_tokens = max_tokens
        self.tokens_per_fill = tokens_per_fill
        self.fill_interval = fill_interval
        self.tokens = max_tokens
        self.limited_total = 0
        self._origin: float | None = None  # time of first use; fills are counted from it
        self._fills = 0  # fill intervals already credited

    @classmethod
    def for_rule(cls, rule: RateLimitRule) -> TokenBucket:
        """The bucket Envoy Gateway configures for a local rule."""
        return cls(rule.requests, max(rule.requests, 1), rule.unit_seconds)

    def _refill(self, now: float) -> None:
        if self._origin is None:
            self._origin = now
            return
        fills = math.floor((now - self._origin) / self.fill_interval)
        if fills > self._fills:
            added = (fills - self._fills) * self.tokens_per_fill
            self.tokens = min(self.max_tokens, self.tokens + added)
            self._fills = fills

    def try_take(self, now: float) -> bool:
        """Take one token if there is one; False means answer 429."""
        self._refill(now)
        if self.tokens > 0:
            self.tokens -= 1
            return True
        self.limited_total += 1
        return False

    def remaining(self, now: float) -> int:
        """Tokens left at `now`."""
        self._refill(now)
        return self.tokens

    def reset_after(self, now: float) -> float:
        """Seconds until the next fill."""
        self._refill(now)
        assert self._origin is not None
        return self._origin + (self._fills + 1) * self.fill_interval - now

    def ratelimit_headers(self, now: float) -> dict[str, str]:
        """Envoy's `x-ratelimit-*` response headers (IETF draft 03) for this bucket."""
        return {
            "x-ratelimit-limit": str(self.max_tokens),
            "x-ratelimit-remaining": str(self.remaining(now)),
            "x-ratelimit-reset": str(math.ceil(self.reset_after(now))),
        }

    def __repr__(self) -> str:
        return (f"<TokenBucket tokens={self.tokens}/{self.max_tokens}"
                f" fill={self.tokens_per_fill}/{self.fill_interval:g}s"
                f" limited={self.limited_total}>")


class LocalRateLimiter:
    """The buckets of a policy's local rules; a request passes only if every rule it matches
    has a token (rules are matched to requests by the caller, via client selectors)."""

    def __init__(self, rules: Iterable[RateLimitRule]) -> None:
        self.rules = tuple(rules)
        self.buckets = tuple(TokenBucket.for_rule(r) for r in self.rules)

    def try_take(self, now: float, matched: Iterable[int] | None = None) -> bool:
        """Take a token from each matched rule's bucket (all rules when `matched` is None).

        Tokens are only taken when every matched bucket has one, so a request refused by one
        rule does not drain the others.
        """
        indexes = range(len(self.buckets)) if matched is None else list(matched)
        chosen = [self.buckets[i] for i in indexes]
        if any(b.remaining(now) == 0 for b in chosen):
            for b in chosen:
                if b.remaining(now) == 0:
                    b.limited_total += 1
            return False
        for b in chosen:
            b.try_take(now)
        return True

    def ratelimit_headers(self, now: float, matched: Iterable[int] | None = None) -> dict[str, str]:
        """`x-ratelimit-*` headers for the most constrained matched bucket (empty if none)."""
        indexes = range(len(self.buckets)) if matched is None else list(matched)
        chosen = [self.buckets[i] for i in indexes]
        if not chosen:
            return {}
        tightest = min(chosen, key=lambda b: (b.remaining(now), -b.reset_after(now)))
        return tightest.ratelimit_headers(now)

    def __repr__(self) -> str:
        return f"<LocalRateLimiter {list(self.buckets)}>"

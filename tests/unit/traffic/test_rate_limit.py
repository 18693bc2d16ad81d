"""Local rate limit: Envoy token buckets per rule, refills, headers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolgate.traffic.rate_limit import LocalRateLimiter, RateLimitRule, RateUnit, TokenBucket


def bucket(requests: int, unit: str) -> TokenBucket:
    return TokenBucket.for_rule(RateLimitRule.of(requests, unit))


def test_bucket_starts_full_and_refuses_when_empty() -> None:
    b = bucket(3, "Second")
    assert [b.try_take(100.0) for _ in range(4)] == [True, True, True, False]
    assert b.limited_total == 1
    assert repr(b) == "<TokenBucket tokens=0/3 fill=3/1s limited=1>"


@pytest.mark.parametrize(
    ("unit", "almost", "after"),
    [
        pytest.param("Second", 0.999, 1.0, id="second"),
        pytest.param("Minute", 59.9, 60.0, id="minute"),
        pytest.param("Hour", 3599.0, 3600.0, id="hour"),
        pytest.param("Day", 86399.0, 86400.0, id="day"),
    ],
)
def test_refill_happens_at_whole_fill_intervals(unit: str, almost: float, after: float) -> None:
    b = bucket(2, unit)
    assert b.try_take(0.0) and b.try_take(0.0)
    assert not b.try_take(almost)
    assert b.try_take(after) and b.try_take(after)
    assert not b.try_take(after)


def test_refill_never_exceeds_the_limit() -> None:
    b = bucket(2, "Second")
    b.try_take(0.0)
    assert b.remaining(10.0) == 2


def test_zero_requests_always_limits() -> None:
    b = bucket(0, "Minute")
    assert not b.try_take(0.0)
    assert not b.try_take(600.0)


def test_ratelimit_headers() -> None:
    b = bucket(10, "Minute")
    b.try_take(0.0)
    b.try_take(15.2)
    assert b.ratelimit_headers(15.2) == {
        "x-ratelimit-limit": "10", "x-ratelimit-remaining": "8", "x-ratelimit-reset": "45"}


def test_unknown_unit_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="Second, Minute, Hour, Day"):
        RateLimitRule.of(10, "Fortnight")
    assert RateUnit("Minute").seconds == 60.0


def test_limiter_needs_a_token_from_every_matched_rule_and_drains_none_when_refused() -> None:
    limiter = LocalRateLimiter([RateLimitRule.of(1, "Second"), RateLimitRule.of(5, "Minute")])
    assert limiter.try_take(0.0)
    assert not limiter.try_take(0.5)  # the per-second rule is empty
    assert limiter.buckets[1].remaining(0.5) == 4  # the refused request took nothing
    assert limiter.try_take(1.0)
    assert limiter.try_take(2.0, matched=[1])  # only the minute rule matches this request
    assert limiter.ratelimit_headers(2.0)["x-ratelimit-remaining"] == "1"
    assert limiter.ratelimit_headers(2.0, matched=[]) == {}


@given(requests=st.integers(1, 20),
       times=st.lists(st.floats(0, 10, allow_nan=False), min_size=1, max_size=80))
def test_never_more_than_the_limit_per_fill_interval(requests: int, times: list[float]) -> None:
    b = bucket(requests, "Second")
    times = sorted(times)
    origin = times[0]
    per_window: dict[int, int] = {}
    for t in times:
        if b.try_take(t):
            window = int((t - origin) // 1.0)
            per_window[window] = per_window.get(window, 0) + 1
    assert all(n <= requests for n in per_window.values())


def test_rules_with_the_config_snapshot_shape_are_accepted() -> None:
    class ConfigRule:
        requests = 1
        unit_seconds = 60.0

    limiter = LocalRateLimiter([ConfigRule()])
    assert limiter.try_take(0.0) and not limiter.try_take(59.0) and limiter.try_take(60.0)
    assert RateLimitRule.of(3, "Hour") == RateLimitRule(3, 3600.0)

"""RetryPolicy: Envoy's retry-on semantics, jittered back-off, endpoint preference."""

from __future__ import annotations

import random
from typing import get_args

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolgate.api.envoy import RetryTrigger
from poolgate.traffic.retry import (
    AttemptOutcome,
    FailureKind,
    RetryPolicy,
    RetrySpec,
    Trigger,
    untried,
)

DEFAULT = RetryPolicy(RetrySpec())


def status(code: int, started: bool = False) -> AttemptOutcome:
    return AttemptOutcome(status=code, response_started=started)


def failure(kind: FailureKind | str) -> AttemptOutcome:
    return AttemptOutcome(failure=kind)


@pytest.mark.parametrize(
    ("triggers", "outcome", "expected"),
    [
        pytest.param(None, failure(FailureKind.CONNECT_FAILURE), True, id="default-connect"),
        pytest.param(None, failure("connection failure"), True, id="default-connect-as-string"),
        pytest.param(None, status(503), True, id="default-503"),
        pytest.param(None, status(500), False, id="default-500"),
        pytest.param(None, failure(FailureKind.RESET), False, id="default-reset-not-retried"),
        pytest.param(None, failure(FailureKind.REFUSED_STREAM), True, id="default-refused"),
        pytest.param(None, failure(FailureKind.TIMEOUT), False, id="default-timeout"),
        pytest.param(None, status(200), False, id="success"),
        pytest.param(["5xx"], status(500), True, id="5xx-500"),
        pytest.param(["5xx"], failure(FailureKind.RESET), True, id="5xx-reset"),
        pytest.param(["5xx"], failure(FailureKind.TIMEOUT), True, id="5xx-per-try-timeout"),
        pytest.param(["5xx"], status(429), False, id="5xx-429"),
        pytest.param(["gateway-error"], status(502), True, id="gateway-502"),
        pytest.param(["gateway-error"], status(500), False, id="gateway-500"),
        pytest.param(["gateway-error"], failure(FailureKind.CONNECT_FAILURE), True,
                     id="gateway-connect"),
        pytest.param(["reset"], failure(FailureKind.RESET), True, id="reset-reset"),
        pytest.param(["reset"], failure(FailureKind.TIMEOUT), False, id="reset-timeout"),
        pytest.param(["reset"], status(503), False, id="reset-503"),
        pytest.param(["connect-failure"], failure(FailureKind.RESET), False,
                     id="connect-failure-reset"),
        pytest.param(["retriable-4xx"], status(409), True, id="4xx-409"),
        pytest.param(["retriable-4xx"], status(429), False, id="4xx-429"),
        pytest.param(["unavailable", "cancelled"], status(503), False, id="grpc-triggers-no-http"),
        pytest.param(["5xx"], failure(FailureKind.OVERFLOW), False, id="overflow-never"),
        pytest.param(["5xx"], status(503, started=True), False, id="after-first-byte-never"),
    ],
)
def test_should_retry_follows_envoy_retry_on(triggers: list[str] | None, outcome: AttemptOutcome,
                                            expected: bool) -> None:
    spec = RetrySpec() if triggers is None else RetrySpec(triggers=frozenset(triggers))
    assert RetryPolicy(spec).should_retry(0, outcome) is expected


def test_retriable_status_codes_replace_the_default_503() -> None:
    policy = RetryPolicy(RetrySpec(http_status_codes=[500, 504]))
    assert policy.should_retry(0, status(500))
    assert not policy.should_retry(0, status(503))


def test_num_retries_bounds_the_attempts() -> None:
    assert DEFAULT.num_retries == 2
    outcome = status(503)
    assert [DEFAULT.should_retry(a, outcome) for a in range(4)] == [True, True, False, False]
    assert not RetryPolicy(RetrySpec(num_retries=0)).should_retry(0, outcome)


def test_defaults_are_envoy_gateways() -> None:
    assert repr(DEFAULT) == (
        "<RetryPolicy num_retries=2 triggers=cancelled,connect-failure,refused-stream,"
        "retriable-status-codes,unavailable codes=503 per_retry_timeout=None backoff=0.025..0.25>")
    assert RetryPolicy(None).triggers == DEFAULT.triggers


@pytest.mark.parametrize(
    ("values", "message"),
    [
        pytest.param({"triggers": ["5xx", "teapot"]}, "unknown value", id="trigger"),
        pytest.param({"num_retries": -1}, "num_retries", id="negative-retries"),
        pytest.param({"http_status_codes": [42]}, "http_status_codes", id="status"),
        pytest.param({"backoff_base": 0.5, "backoff_max": 0.1}, "backoff_max_interval",
                     id="max-below-base"),
        pytest.param({"per_retry_timeout": 0}, "per_retry_timeout", id="zero-per-retry"),
    ],
)
def test_invalid_specs_are_refused_with_a_message(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetrySpec(**values)  # type: ignore[arg-type]


def test_backoff_ceiling_doubles_from_the_base_up_to_the_max() -> None:
    class Top(random.Random):
        def random(self) -> float:
            return 0.999999

    policy = RetryPolicy(RetrySpec(backoff_base=0.025))
    ceilings = [policy.backoff(a, Top()) for a in range(6)]
    assert ceilings == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.25, 0.25], rel=1e-5)
    assert policy.backoff(1000, Top()) == pytest.approx(0.25, rel=1e-5)


@given(attempt=st.integers(0, 200), seed=st.integers(0, 2**32))
def test_backoff_is_fully_jittered_within_the_window(attempt: int, seed: int) -> None:
    delay = DEFAULT.backoff(attempt, random.Random(seed))
    assert 0 <= delay < min(0.025 * 2 ** min(attempt, 64), 0.25)


def test_backoff_is_reproducible_with_a_seed() -> None:
    assert DEFAULT.backoff(2, random.Random(7)) == DEFAULT.backoff(2, random.Random(7))


@pytest.mark.parametrize(
    ("candidates", "tried", "expected"),
    [
        pytest.param(["a", "b", "c"], [], ["a", "b", "c"], id="first-attempt"),
        pytest.param(["a", "b", "c"], ["a"], ["b", "c"], id="skip-tried"),
        pytest.param(["a", "b"], ["a", "b"], ["a", "b"], id="all-tried-falls-back"),
        pytest.param([], ["a"], [], id="empty"),
    ],
)
def test_untried_prefers_other_endpoints(candidates: list[str], tried: list[str],
                                         expected: list[str]) -> None:
    assert untried(candidates, tried) == expected


def test_untried_with_a_key() -> None:
    eps = [("10.0.0.1", 8000), ("10.0.0.2", 8000)]
    assert untried(eps, {"10.0.0.1:8000"}, key=lambda e: f"{e[0]}:{e[1]}") == [eps[1]]


def test_trigger_names_match_envoy_gateway() -> None:
    # Every trigger the BackendTrafficPolicy schema accepts has a meaning here, and no other.
    assert {t.value for t in Trigger} == set(get_args(RetryTrigger))


def test_spec_takes_any_iterable_and_fills_the_backoff_ceiling() -> None:
    spec = RetrySpec(num_retries=1, triggers=["5xx"], http_status_codes=[], per_retry_timeout=2.0,
                     backoff_base=0.1)
    assert spec.triggers == frozenset({Trigger.FIVE_XX}) and spec.http_status_codes == frozenset()
    policy = RetryPolicy(spec)
    assert (policy.num_retries, policy.backoff_base, policy.backoff_max) == (1, 0.1, 1.0)
    assert policy.per_retry_timeout == 2.0
    assert policy.should_retry(0, status(500))


def test_reset_before_request_retries_only_connect_failures() -> None:
    policy = RetryPolicy(RetrySpec(triggers=["reset-before-request"], http_status_codes=[]))
    assert policy.should_retry(0, failure(FailureKind.CONNECT_FAILURE))
    assert not policy.should_retry(0, failure(FailureKind.RESET))
    assert not policy.should_retry(0, status(503))


def test_explicitly_empty_triggers_retry_nothing() -> None:
    policy = RetryPolicy(RetrySpec(triggers=[], http_status_codes=[]))
    assert not policy.should_retry(0, failure(FailureKind.CONNECT_FAILURE))
    assert not policy.should_retry(0, status(503))

"""Timeouts: route over policy precedence, no default cut-off, validation."""

from __future__ import annotations

import pytest

from poolgate.traffic.timeouts import DEFAULT_TIMEOUTS, Timeouts, resolve_timeouts


@pytest.mark.parametrize(
    ("route", "policy", "total"),
    [
        pytest.param(None, None, None, id="neither-set-no-cut-off"),
        pytest.param(None, 30.0, 30.0, id="policy-only"),
        pytest.param(5.0, 30.0, 5.0, id="route-wins"),
        pytest.param(60.0, 1.0, 60.0, id="route-wins-when-longer"),
        pytest.param(0.0, 30.0, None, id="route-zero-disables"),
        pytest.param(None, 0.0, None, id="policy-zero-disables"),
        pytest.param(2, None, 2.0, id="integer-seconds"),
    ],
)
def test_request_timeout_precedence(route: float | None, policy: float | None,
                                    total: float | None) -> None:
    assert resolve_timeouts(route, policy).total == total


def test_defaults_connect_like_envoy_and_never_cut_streams() -> None:
    assert Timeouts(connect=10.0, per_try=None, total=None) == DEFAULT_TIMEOUTS


def test_connect_override_and_other_defaults_are_kept() -> None:
    defaults = Timeouts(connect=3.0, per_try=20.0)
    resolved = resolve_timeouts(None, 120.0, defaults, connect=1.5)
    assert resolved == Timeouts(connect=1.5, per_try=20.0, total=120.0)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        pytest.param(lambda: resolve_timeouts(-1.0, None), "timeouts.request", id="negative-route"),
        pytest.param(lambda: resolve_timeouts(None, float("inf")), "requestTimeout",
                     id="infinite-policy"),
        pytest.param(lambda: Timeouts(connect=0), "connect", id="zero-connect"),
        pytest.param(lambda: Timeouts(per_try=-2), "per_try", id="negative-per-try"),
    ],
)
def test_invalid_values_are_refused(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]

"""OutlierDetector: consecutive-error ejection, ejection time, max percent, panic, sweeps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from poolgate.traffic.outlier import EjectionType, OutlierDetector, OutlierSpec
from poolgate.traffic.retry import FailureKind

EPS = [f"10.0.0.{i}:8000" for i in range(1, 11)]


def detector(endpoints: list[str] | None = None, **spec: object) -> OutlierDetector:
    d = OutlierDetector(OutlierSpec(**spec))  # type: ignore[arg-type]
    d.update_endpoints(EPS if endpoints is None else endpoints)
    return d


def fail(d: OutlierDetector, ep: str, n: int, now: float,
         result: int | FailureKind = 503) -> list[EjectionType | None]:
    return [d.record(ep, result, now) for _ in range(n)]


def test_five_consecutive_5xx_eject_for_the_base_time() -> None:
    d = detector()
    assert fail(d, EPS[0], 4, 0.0) == [None] * 4
    assert not d.is_ejected(EPS[0], 0.0)
    assert d.record(EPS[0], 500, 1.0) is EjectionType.CONSECUTIVE_5XX
    assert d.is_ejected(EPS[0], 1.0)
    assert d.is_ejected(EPS[0], 30.9)
    assert not d.is_ejected(EPS[0], 31.0)


@pytest.mark.parametrize(
    ("results", "ejected"),
    [
        pytest.param([503, 503, 200, 503, 503, 503], False, id="success-resets"),
        pytest.param([503, 503, 404, 503, 503, 503], False, id="4xx-resets"),
        pytest.param([500, FailureKind.CONNECT_FAILURE, 502, FailureKind.TIMEOUT,
                      FailureKind.RESET], True, id="local-failures-count-as-5xx"),
        pytest.param([503, FailureKind.OVERFLOW, 503, FailureKind.OVERFLOW, 503, 503, 503], True,
                     id="overflow-is-ignored-not-a-reset"),
        pytest.param([FailureKind.OVERFLOW] * 10, False, id="overflow-never-counts"),
    ],
)
def test_what_counts_towards_consecutive_5xx(results: list[int | FailureKind],
                                             ejected: bool) -> None:
    d = detector()
    for r in results:
        d.record(EPS[0], r, 0.0)
    assert d.is_ejected(EPS[0], 0.0) is ejected


def test_consecutive_gateway_failure_when_enabled() -> None:
    d = detector(consecutive_gateway_failure=2, consecutive_5xx=100)
    assert d.record(EPS[0], 500, 0.0) is None
    assert d.record(EPS[0], 502, 0.0) is None
    assert d.record(EPS[0], 504, 0.0) is EjectionType.CONSECUTIVE_GATEWAY_FAILURE
    assert d.ejections_total[EjectionType.CONSECUTIVE_GATEWAY_FAILURE] == 1


def test_split_local_origin_errors_count_separately() -> None:
    d = detector(split_external_local_origin_errors=True, consecutive_local_origin_failure=2)
    assert d.record(EPS[0], FailureKind.CONNECT_FAILURE, 0.0) is None
    assert d.record(EPS[0], 200, 0.0) is None  # a response proves the connection works
    assert d.record(EPS[0], FailureKind.CONNECT_FAILURE, 0.0) is None
    assert d.record(EPS[0], FailureKind.TIMEOUT, 0.0) is EjectionType.CONSECUTIVE_LOCAL_ORIGIN_FAILURE
    # ...and local-origin failures do not feed the 5xx counter.
    d2 = detector(split_external_local_origin_errors=True, consecutive_local_origin_failure=100)
    fail(d2, EPS[0], 10, 0.0, FailureKind.RESET)
    assert not d2.is_ejected(EPS[0], 0.0)


def test_ejection_time_grows_with_each_ejection_and_is_capped() -> None:
    d = detector(base_ejection_time=30.0, max_ejection_time=70.0)
    now = 0.0
    lengths = []
    for _ in range(4):
        fail(d, EPS[0], 5, now)
        start = now
        while d.is_ejected(EPS[0], now):
            now += 1.0
        lengths.append(now - start)
    assert lengths == [30.0, 60.0, 70.0, 70.0]


def test_sweep_decays_the_multiplier_of_an_endpoint_that_stays_healthy() -> None:
    d = detector(interval=3.0)
    fail(d, EPS[0], 5, 0.0)
    fail(d, EPS[0], 5, 30.0)  # second ejection: 60 s
    assert d.ejection_multiplier(EPS[0]) == 2
    d.sweep(91.0)  # ejection ended at 90, not yet one interval ago
    assert d.ejection_multiplier(EPS[0]) == 2
    d.sweep(93.0)
    d.sweep(96.0)
    assert d.ejection_multiplier(EPS[0]) == 0
    d.sweep(99.0)
    assert d.ejection_multiplier(EPS[0]) == 0
    fail(d, EPS[0], 5, 100.0)
    assert d.is_ejected(EPS[0], 129.0) and not d.is_ejected(EPS[0], 130.0)


def test_unejection_resets_the_counters() -> None:
    d = detector()
    fail(d, EPS[0], 5, 0.0)
    d.sweep(31.0)
    assert fail(d, EPS[0], 4, 31.0) == [None] * 4


@pytest.mark.parametrize(
    ("count", "max_percent", "always_one", "expected_ejected"),
    [
        pytest.param(10, 10, True, 1, id="10-percent-of-10"),
        pytest.param(10, 20, True, 2, id="20-percent-of-10"),
        pytest.param(3, 10, True, 1, id="small-pool-still-ejects-one"),
        pytest.param(3, 10, False, 0, id="small-pool-without-always-one"),
        pytest.param(4, 50, True, 2, id="half"),
        pytest.param(4, 0, False, 0, id="zero-percent"),
    ],
)
def test_max_ejection_percent(count: int, max_percent: int, always_one: bool,
                              expected_ejected: int) -> None:
    eps = EPS[:count]
    d = detector(eps, max_ejection_percent=max_percent, always_eject_one=always_one)
    for ep in eps:
        fail(d, ep, 5, 0.0)
    assert sum(d.is_ejected(ep, 0.0) for ep in eps) == expected_ejected
    assert d.ejections_overflow == count - expected_ejected


@pytest.mark.parametrize(
    ("ejected", "unhealthy", "panic"),
    [
        pytest.param(0, 0, False, id="all-healthy"),
        pytest.param(1, 0, False, id="one-of-four-out"),
        pytest.param(1, 1, False, id="exactly-half-usable-is-not-panic"),
        pytest.param(1, 2, True, id="three-of-four-out"),
        pytest.param(0, 4, True, id="all-failing-active-checks"),
    ],
)
def test_panic_routes_to_every_endpoint(ejected: int, unhealthy: int, panic: bool) -> None:
    eps = EPS[:4]
    d = detector(eps, max_ejection_percent=100)
    for ep in eps[:ejected]:
        fail(d, ep, 5, 0.0)
    bad = set(eps[ejected:ejected + unhealthy])
    assert d.in_panic(eps, 1.0, bad) is panic
    usable = [e for e in eps if e not in bad and not d.is_ejected(e, 1.0)]
    assert d.available(eps, 1.0, bad) == (eps if panic else usable)


def test_panic_threshold_zero_can_leave_no_endpoint() -> None:
    d = detector(EPS[:1], healthy_panic_threshold=0)
    fail(d, EPS[0], 5, 0.0)
    assert d.available(EPS[:1], 0.0) == []


def test_membership_updates_keep_state_of_kept_endpoints() -> None:
    d = detector(EPS[:3])
    fail(d, EPS[0], 5, 0.0)
    d.update_endpoints([EPS[0], EPS[5]])
    assert d.is_ejected(EPS[0], 1.0)
    # As in Envoy, an ejection resets only the counter that fired; the rest reset on un-ejection.
    assert repr(d) == (f"<OutlierDetector {EPS[0]}:ejected_until=30,5xx=0,gw=5,x1 "
                       f"{EPS[5]}:in,5xx=0,gw=0,x0>")


def test_spec_defaults_and_validation() -> None:
    spec = OutlierSpec(consecutive_5xx=3, base_ejection_time=10.0)
    assert (spec.consecutive_5xx, spec.base_ejection_time, spec.interval) == (3, 10.0, 3.0)
    assert spec.effective_max_ejection_time == 300.0
    with pytest.raises(ValueError, match="max_ejection_time"):
        OutlierSpec(base_ejection_time=30.0, max_ejection_time=10.0)
    with pytest.raises(ValueError, match="consecutive_5xx"):
        OutlierSpec(consecutive_5xx=0)


@given(st.lists(st.tuples(st.integers(0, 9), st.sampled_from([200, 500, 503, 404]),
                          st.floats(0, 5, allow_nan=False)), max_size=200))
def test_never_more_than_max_percent_ejected_beyond_the_first(
        events: list[tuple[int, int, float]]) -> None:
    d = detector(max_ejection_percent=20)
    now = 0.0
    for index, code, dt in events:
        now += dt
        d.record(EPS[index], code, now)
        d.sweep(now)
        # 20 % of 10 endpoints is 2 (always_eject_one only matters when none is out).
        assert sum(d.is_ejected(ep, now) for ep in EPS) <= 2


def test_gateway_failure_ejection_from_a_loaded_spec() -> None:
    spec = OutlierSpec(consecutive_gateway_failure=2, consecutive_local_origin_failure=7)
    d = OutlierDetector(spec)
    d.update_endpoints(EPS)
    assert fail(d, EPS[0], 2, 0.0) == [None, EjectionType.CONSECUTIVE_GATEWAY_FAILURE]

"""Spill-over order, the utilisation target and in-flight caps, on plain data."""

from __future__ import annotations

import pytest

from poolgate.balancing import RegionLoad, choose_by_in_flight, choose_by_utilization

NEAR = ("n1:1", "n2:1")
FAR = ("f1:1", "f2:1")
FARTHEST = ("x1:1",)


def regions(near: float | None, far: float | None, farthest: float | None = 0.0,
            near_usable: tuple[str, ...] = NEAR) -> list[RegionLoad]:
    return [RegionLoad("near", NEAR, near_usable, near), RegionLoad("far", FAR, FAR, far),
            RegionLoad("farthest", FARTHEST, FARTHEST, farthest)]


@pytest.mark.parametrize(("near", "far", "region", "reason"), [
    (0.10, 0.0, "near", "nearest"),
    (0.59, 0.0, "near", "nearest"),
    (0.60, 0.0, "far", "spill"),  # at the target: full
    (0.95, 0.30, "far", "spill"),
    (0.95, 0.60, "farthest", "spill"),
    (None, 0.0, "near", "nearest"),  # unknown utilisation: under target
])
def test_fills_the_nearest_region_up_to_the_60_percent_target(
        near: float | None, far: float | None, region: str, reason: str) -> None:
    decision = choose_by_utilization(regions(near, far), 0.60)
    assert (decision.region, decision.reason) == (region, reason)
    wanted = {"near": NEAR, "far": FAR, "farthest": FARTHEST}[region]
    assert decision.candidates == wanted


def test_every_region_over_target_spreads_across_all() -> None:
    decision = choose_by_utilization(regions(0.9, 0.8, 0.7), 0.60)
    assert decision.region is None and decision.reason == "spread"
    assert set(decision.candidates) == set(NEAR + FAR + FARTHEST)


def test_fewer_than_half_healthy_moves_traffic_away() -> None:
    # One of two usable is exactly half: the region keeps its traffic (on the usable one).
    half = choose_by_utilization(regions(0.1, 0.0, near_usable=("n1:1",)), 0.6)
    assert (half.region, half.candidates) == ("near", ("n1:1",))
    three = [RegionLoad("near", ("a", "b", "c"), ("a",), 0.1), RegionLoad("far", FAR, FAR, 0.0)]
    moved = choose_by_utilization(three, 0.6)
    assert (moved.region, moved.reason, moved.candidates) == ("far", "failover", FAR)
    none = choose_by_utilization(regions(0.1, 0.0, near_usable=()), 0.6)
    assert none.region == "far" and none.reason == "failover"


def test_no_eligible_region_uses_every_usable_endpoint() -> None:
    loads = [RegionLoad("near", ("a", "b", "c"), ("a",), 0.1),
             RegionLoad("far", ("d", "e", "f"), ("d",), 0.1)]
    decision = choose_by_utilization(loads, 0.6)
    assert decision.reason == "degraded" and decision.candidates == ("a", "d")


def test_in_flight_fills_near_endpoints_to_the_cap_then_spills_then_caps() -> None:
    counts = {"n1:1": 2, "n2:1": 1, "f1:1": 0}
    decision = choose_by_in_flight(regions(0, 0), lambda a: counts.get(a, 0), 2)
    assert (decision.region, decision.candidates) == ("near", ("n2:1",))
    counts["n2:1"] = 2
    decision = choose_by_in_flight(regions(0, 0), lambda a: counts.get(a, 0), 2)
    assert (decision.region, decision.reason, decision.candidates) == ("far", "spill", FAR)
    capped = choose_by_in_flight(regions(0, 0), lambda a: 2, 2)
    assert capped.candidates == () and capped.reason == "capped"

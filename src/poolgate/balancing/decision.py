"""Which region takes the next request: CUSTOM_METRICS spill-over and IN_FLIGHT caps.

Both functions take regions nearest first (`RegionLoad`s, one per tier of equally near
regions) and return the endpoints the endpoint picker may choose from. A region is **eligible**
while at least half of its endpoints are usable (healthy and not ejected): with fewer, traffic
moves away from it. Pure: no clock, no I/O.

CUSTOM_METRICS (`choose_by_utilization`): the nearest eligible region whose utilisation (mean
of the exported metric over its usable endpoints with a known value) is under the target takes
the request; a region with no known value counts as under target. When every eligible region
is at or over the target, the request may go to any of them ("spread"). With no eligible
region, every usable endpoint anywhere is a candidate ("degraded").

IN_FLIGHT (`choose_by_in_flight`): the nearest eligible region with an endpoint below the cap
takes the request, and only its endpoints below the cap are candidates; then the non-eligible
regions' usable endpoints below the cap; when every endpoint is at the cap the result is empty
(reason "capped": the proxy answers 503).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

Reason = Literal["nearest", "spill", "failover", "spread", "degraded", "capped"]


@dataclass(frozen=True, slots=True)
class RegionLoad:
    """One tier of equally near regions: its endpoints, the usable ones, and their load."""

    region: str
    addresses: tuple[str, ...]
    usable: tuple[str, ...]
    utilization: float | None = None  # mean of the known values over `usable`, in [0, 1]

    @property
    def eligible(self) -> bool:
        """At least half of the region's endpoints are usable (and at least one)."""
        return bool(self.usable) and 2 * len(self.usable) >= len(self.addresses)


@dataclass(frozen=True, slots=True)
class BalancingDecision:
    """The candidates for the endpoint picker, the region chosen (None when spread), why."""

    candidates: tuple[str, ...]
    region: str | None
    reason: Reason


def mean_utilization(usable: Sequence[str],
                     value: Callable[[str], float | None]) -> float | None:
    """Mean of the known values of `usable`, or None when none is known."""
    known = [v for v in (value(a) for a in usable) if v is not None]
    return sum(known) / len(known) if known else None


def _reason(index: int, regions: Sequence[RegionLoad]) -> Reason:
    if index == 0:
        return "nearest"
    return "failover" if any(not r.eligible for r in regions[:index]) else "spill"


def _all_usable(regions: Sequence[RegionLoad]) -> tuple[str, ...]:
    return tuple(a for r in regions for a in r.usable)


def choose_by_utilization(regions: Sequence[RegionLoad], target: float) -> BalancingDecision:
    """CUSTOM_METRICS: fill the nearest eligible region up to `target`, then the next."""
    for i, region in enumerate(regions):
        if not region.eligible:
            continue
        if region.utilization is None or region.utilization < target:
            return BalancingDecision(region.usable, region.region, _reason(i, regions))
    eligible = [r for r in regions if r.eligible]
    if eligible:
        return BalancingDecision(_all_usable(eligible), None, "spread")
    return BalancingDecision(_all_usable(regions), None, "degraded")


def choose_by_in_flight(regions: Sequence[RegionLoad], in_flight: Callable[[str], int],
                        cap: int) -> BalancingDecision:
    """IN_FLIGHT: the nearest eligible region with an endpoint under `cap` in flight."""
    for i, region in enumerate(regions):
        if not region.eligible:
            continue
        free = tuple(a for a in region.usable if in_flight(a) < cap)
        if free:
            return BalancingDecision(free, region.region, _reason(i, regions))
    free = tuple(a for r in regions if not r.eligible for a in r.usable if in_flight(a) < cap)
    if free:
        return BalancingDecision(free, None, "degraded")
    return BalancingDecision((), None, "capped")

"""One pool's balancing: health and ejection first, then the GCPBackendPolicy's region choice."""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence

from poolgate.balancing.decision import (
    BalancingDecision,
    RegionLoad,
    choose_by_in_flight,
    choose_by_utilization,
    mean_utilization,
)
from poolgate.balancing.regions import RegionOrder
from poolgate.balancing.spec import BackendPolicySpec
from poolgate.core.pools import Pool
from poolgate.traffic.outlier import OutlierDetector

# Envoy's default healthy_panic_threshold: below this share of usable endpoints, use them all.
PANIC_PERCENT = 50.0


def usable_endpoints(addresses: Sequence[str], unhealthy: Collection[str],
                     outlier: OutlierDetector | None, now: float) -> tuple[str, ...]:
    """The endpoints that may get new requests: not failing active checks and not ejected.

    In panic (fewer than half usable) every endpoint is returned, as Envoy does.
    """
    if outlier is not None:
        return tuple(outlier.available(addresses, now, unhealthy))
    if not unhealthy:
        return tuple(addresses)
    usable = tuple(a for a in addresses if a not in unhealthy)
    if addresses and 100.0 * len(usable) / len(addresses) < PANIC_PERCENT:
        return tuple(addresses)
    return usable


class PoolBalancer:
    """Region-aware choice for one pool under one GCPBackendPolicy (or none).

    Built once per (pool, policy, region order) and reused: it keeps the pool's endpoints
    grouped into region tiers. `choose` is pure and reads the live values through callbacks.
    """

    def __init__(self, pool: Pool, spec: BackendPolicySpec | None, order: RegionOrder) -> None:
        self.pool = pool
        self.spec = spec
        self.order = order
        by_region: dict[str, list[str]] = {}
        for ep in pool.endpoints:
            by_region.setdefault(order.region_of(ep.region), []).append(ep.address)
        self.region_of = {a: r for r, addrs in by_region.items() for a in addrs}
        self.tiers: list[tuple[str, tuple[str, ...]]] = [
            (",".join(t) if any(t) else (order.home or ""),
             tuple(a for region in t for a in by_region[region]))
            for t in order.tiers(by_region)
        ]

    @property
    def steers(self) -> bool:
        """Whether the policy has a balancing mode (dry run or not)."""
        return self.spec is not None and self.spec.mode is not None

    def regions(self, usable: Collection[str],
                utilization: Callable[[str], float | None]) -> list[RegionLoad]:
        """The pool's region tiers nearest first, with their usable endpoints and load."""
        out = []
        for name, addresses in self.tiers:
            ok = tuple(a for a in addresses if a in usable)
            out.append(RegionLoad(name, addresses, ok, mean_utilization(ok, utilization)))
        return out

    def choose(self, usable: Collection[str], utilization: Callable[[str], float | None],
               in_flight: Callable[[str], int]) -> BalancingDecision | None:
        """The policy's decision over the usable endpoints, or None without a balancing mode."""
        spec = self.spec
        if spec is None or spec.mode is None:
            return None
        regions = self.regions(usable, utilization)
        if spec.mode == "IN_FLIGHT":
            assert spec.max_in_flight is not None
            return choose_by_in_flight(regions, in_flight, spec.max_in_flight)
        return choose_by_utilization(regions, spec.max_utilization)

"""poolgate.balancing: multi-cluster, multi-region balancing of one pool (GCPBackendPolicy).

Pure policy over plain data: `RegionOrder` ranks regions nearest first, `choose_by_utilization`
(CUSTOM_METRICS) and `choose_by_in_flight` (IN_FLIGHT) narrow a pool's usable endpoints to the
region that should take the next request, `PoolBalancer` ties them to one pool and policy, and
`usable_endpoints` applies active health and outlier ejection (with Envoy's panic mode) first.
"""

from poolgate.balancing.decision import (
    BalancingDecision,
    RegionLoad,
    choose_by_in_flight,
    choose_by_utilization,
)
from poolgate.balancing.pool import PoolBalancer, usable_endpoints
from poolgate.balancing.regions import RegionOrder

__all__ = [
    "BalancingDecision",
    "PoolBalancer",
    "RegionLoad",
    "RegionOrder",
    "choose_by_in_flight",
    "choose_by_utilization",
    "usable_endpoints",
]

"""Which of a backend's endpoints an attempt may use: active health, passive outlier ejection, and
the GCPBackendPolicy's multi-cluster balancing (region spill-over, in-flight caps).

The per-backend objects (balancer, outlier detector) live in the `BackendCluster`, built at swap;
this holds what every backend shares: the active-check results, the live store and the metrics.
"""

from __future__ import annotations

import logging

from poolgate.balancing import usable_endpoints
from poolgate.balancing.errors import InFlightCapReached
from poolgate.balancing.metrics import BalancingMetrics
from poolgate.datalayer import EndpointStore
from poolgate.datalayer.health import HealthTracker
from poolgate.proxy.cluster import BackendCluster
from poolgate.traffic.errors import NoHealthyEndpoint
from poolgate.traffic.retry import FailureKind

log = logging.getLogger("poolgate.gateway")


class Steering:
    """Narrows a cluster's endpoints before each pick and feeds attempt results to its outlier
    detection (one per gateway; sync, no I/O)."""

    def __init__(self, store: EndpointStore, health: HealthTracker, staleness: float,
                 metrics: BalancingMetrics) -> None:
        self.store = store
        self.health = health  # active-check state, fed by the server's prober
        self.staleness = staleness
        self.metrics = metrics

    def narrow(self, cluster: BackendCluster, now: float) -> tuple[str, ...]:
        """The endpoints this attempt may use: healthy and not ejected (or all, in panic), then
        the region the GCPBackendPolicy's balancing mode chooses."""
        candidates = cluster.candidates
        unreachable = self.store.unreachable
        if unreachable and cluster.outlier is None and len(candidates) > 1:
            # A connect failure took these out until they answer a scrape or a health check
            # (with passive health checks configured, outlier detection decides instead).
            candidates = tuple(c for c in candidates if c not in unreachable) or candidates
        balancer = cluster.balancer
        if balancer is None:
            return candidates
        outlier = cluster.outlier
        detector = None
        if outlier is not None:
            detector = outlier.detector
            if now - outlier.swept_at >= outlier.spec.interval:
                detector.sweep(now)
                outlier.swept_at = now
        usable = usable_endpoints(candidates, self.health.unhealthy_set(), detector, now)
        if not usable:
            raise NoHealthyEndpoint()
        spec = balancer.spec
        if spec is None or spec.mode is None:
            return usable
        store, staleness = self.store, self.staleness

        def utilization(address: str) -> float | None:
            signals = store.fresh_signals(address, now, staleness)
            return signals.kv_usage if signals is not None else None

        decision = balancer.choose(frozenset(usable), utilization, store.in_flight)
        assert decision is not None
        self.metrics.count_decision(balancer.pool.key, spec.mode, decision.region,
                                    decision.reason, spec.dry_run)
        if spec.dry_run:
            return usable
        if not decision.candidates:
            assert spec.max_in_flight is not None
            raise InFlightCapReached(balancer.pool.key, spec.max_in_flight)
        return decision.candidates

    def record(self, cluster: BackendCluster, address: str, result: int | FailureKind,
               now: float) -> None:
        """Feed one attempt's result to the cluster's outlier detection, if it has one; an
        endpoint no connection could be opened to is marked unreachable."""
        if result is FailureKind.CONNECT_FAILURE:
            self.store.mark_unreachable(address)
        outlier = cluster.outlier
        if outlier is None:
            return
        ejected = outlier.detector.record(address, result, now)
        if ejected is not None:
            self.metrics.ejections.labels(cluster.key, ejected.value).inc()
            log.warning("endpoint %s ejected from %s (%s)", address, cluster.key, ejected.value)

"""Which of a pool's endpoints an attempt may use: active health, passive outlier ejection, and
the GCPBackendPolicy's multi-cluster balancing (region spill-over, in-flight caps)."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from prometheus_client import CollectorRegistry

from poolgate.balancing import PoolBalancer, RegionOrder, usable_endpoints
from poolgate.balancing.errors import InFlightCapReached
from poolgate.balancing.metrics import BalancingMetrics
from poolgate.config.policy import BackendPolicySpec, PassiveHealthCheckSpec, TrafficPolicy
from poolgate.config.snapshot import Backend, Pool, Snapshot
from poolgate.datalayer import EndpointStore
from poolgate.datalayer.health import HealthTracker
from poolgate.traffic.errors import NoHealthyEndpoint
from poolgate.traffic.outlier import OutlierDetector
from poolgate.traffic.retry import FailureKind

log = logging.getLogger("poolgate.gateway")


class Steering:
    """Per-process health and balancing state, shared by every request (one per gateway)."""

    def __init__(self, store: EndpointStore, staleness: float, region_order: RegionOrder,
                 registry: CollectorRegistry) -> None:
        self.store = store
        self.staleness = staleness
        # Active-check state, fed by the server's prober.
        self.health = HealthTracker()
        self.region_order = region_order
        self.metrics = BalancingMetrics(registry)
        # One balancer per backendRef, one outlier detector per backendRef with passive checks.
        self._balancers: dict[str, PoolBalancer] = {}
        self._outliers: dict[str, OutlierState] = {}

    def for_backend(self, snap: Snapshot, backend: Backend, pool: Pool,
                    policy: TrafficPolicy | None) -> BackendSteering | None:
        """What narrows this backend's endpoints before a pick, or None when nothing does."""
        outlier = self._outlier(backend, pool, policy)
        spec = snap.backend_policies.get(pool.key)
        if outlier is None and pool.key not in snap.health_checks and (
                spec is None or spec.mode is None):
            return None
        balancer = self._balancers.get(backend.key)
        if balancer is None or balancer.pool is not pool or balancer.spec is not spec:
            balancer = self._balancers[backend.key] = PoolBalancer(pool, spec, self.region_order)
        return BackendSteering(balancer, outlier)

    def _outlier(self, backend: Backend, pool: Pool,
                 policy: TrafficPolicy | None) -> OutlierState | None:
        hc = policy.health_check if policy is not None else None
        passive = hc.passive if hc is not None else None
        if passive is None:
            return None
        found = self._outliers.get(backend.key)
        if found is None or found.spec != passive:
            found = OutlierState(passive, OutlierDetector(passive))
            found.detector.update_endpoints(pool.addresses)
            self._outliers[backend.key] = found
        return found

    def retain(self, snapshot: Snapshot) -> None:
        """After a reload: balancers are rebuilt lazily; ejection state is kept for the
        backendRefs that still exist."""
        self._balancers.clear()
        pools = {b.key: b.pool for r in snapshot.routes for rule in r.rules
                 for b in rule.backends if b.pool is not None}
        for key in list(self._outliers):
            pool = pools.get(key)
            if pool is None:
                del self._outliers[key]
            else:
                self._outliers[key].detector.update_endpoints(pool.addresses)

    def outlier_detector(self, backend_key: str) -> OutlierDetector | None:
        """The passive outlier detector of a backendRef, if it has one (for /status)."""
        found = self._outliers.get(backend_key)
        return found.detector if found is not None else None

    def narrow(self, steering: BackendSteering, candidates: tuple[str, ...],
               now: float) -> tuple[str, ...]:
        """The endpoints this attempt may use: healthy and not ejected (or all, in panic), then
        the region the GCPBackendPolicy's balancing mode chooses."""
        balancer, outlier = steering.balancer, steering.outlier
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

    def record(self, outlier: OutlierState | None, backend: Backend, address: str,
               result: int | FailureKind) -> None:
        """Feed one attempt's result to the backendRef's outlier detection."""
        if outlier is None:
            return
        ejected = outlier.detector.record(address, result, asyncio.get_running_loop().time())
        if ejected is not None:
            self.metrics.ejections.labels(backend.key, ejected.value).inc()
            log.warning("endpoint %s ejected from %s (%s)", address, backend.key, ejected.value)

    def backend_timeout(self, snap: Snapshot, backend: Backend,
                        route_total: float | None) -> BackendPolicySpec | None:
        """The GCPBackendPolicy whose timeoutSec is this request's deadline, when it is the
        shorter limit."""
        if backend.pool is None:
            return None
        spec = snap.backend_policies.get(backend.pool.key)
        if spec is None or spec.timeout is None:
            return None
        if route_total is not None and route_total <= spec.timeout:
            return None
        return spec


@dataclass(slots=True)
class BackendSteering:
    """What narrows one backendRef's endpoints before each pick."""

    balancer: PoolBalancer
    outlier: OutlierState | None


@dataclass(slots=True)
class OutlierState:
    """One backendRef's passive outlier detection and when it was last swept."""

    spec: PassiveHealthCheckSpec
    detector: OutlierDetector
    swept_at: float = 0.0

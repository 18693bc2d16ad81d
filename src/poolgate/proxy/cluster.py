"""The gateway's runtime: one `BackendCluster` per backendRef, built when a snapshot is swapped in.

A snapshot is plain data. Everything a request needs to act on it (circuit breaker, retry
policy, outlier detector, region balancer, rate limiter, timeouts, connection settings, the
pool's endpoint picker) is built here once per reload, never inside a request. Live state carries
over from the previous runtime when its spec is unchanged: a breaker with the same limits keeps
its counters (so requests admitted before the reload release against it), an outlier detector
with the same settings keeps its ejections, a rate limiter with the same rules keeps its tokens,
and a pool's picker keeps its prefix index while the pool keeps its profile. A SecurityPolicy's
authenticator (key table, parsed JWKS) is built once per policy and shared by its backendRefs.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from poolgate.auth import Authenticator
from poolgate.balancing import PoolBalancer, RegionOrder
from poolgate.balancing.spec import BackendPolicySpec
from poolgate.config.build import SCHEDULER_PROFILE_ANNOTATION
from poolgate.config.policy import TrafficPolicy
from poolgate.config.snapshot import Backend, RouteRule, Snapshot
from poolgate.core.pools import Endpoint, Pool
from poolgate.datalayer import EndpointStore
from poolgate.datalayer.kv_events import KVEventsHub, KVEventsSource
from poolgate.http.client import ConnectionSettings
from poolgate.observability.scheduling import SchedulerTimings
from poolgate.scheduling import Scheduler, build_scheduler
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.interfaces import UsesKVEvents
from poolgate.traffic.circuit_breaker import BreakerLimits, CircuitBreaker
from poolgate.traffic.outlier import OutlierDetector, OutlierSpec
from poolgate.traffic.rate_limit import LocalRateLimiter
from poolgate.traffic.retry import RetryPolicy
from poolgate.traffic.timeouts import Timeouts, resolve_timeouts


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """Process-wide inputs of the runtime build (from the command line)."""

    connect_timeout: float
    scheduler_profile: str  # pools without the profile annotation use this
    custom_profiles: Mapping[str, SchedulerConfig]
    staleness: float
    seed: int | None
    region_order: RegionOrder
    scheduler_timings: SchedulerTimings | None = None  # the pickers time themselves into it
    kv_events: KVEventsHub | None = None  # feeds the pickers' precise prefix scorers


@dataclass(slots=True, eq=False)
class OutlierState:
    """One backendRef's passive outlier detection and when it was last swept."""

    spec: OutlierSpec
    detector: OutlierDetector
    swept_at: float = 0.0


@dataclass(slots=True, eq=False)
class PoolPicker:
    """A pool's endpoint picker under one profile (shared by every backendRef to the pool)."""

    profile: str
    scheduler: Scheduler


@dataclass(slots=True, eq=False)
class BackendCluster:
    """Everything one backendRef's requests act on; built at swap, shared by its requests.

    `candidates` are the addresses a request may go to (the pool's endpoints, or the one
    `host:port`); `picker` is None for a plain Service backend (a random choice then).
    `balancer` is set when something narrows the endpoints before each pick (active health
    checks, outlier ejection, a GCPBackendPolicy balancing mode). `timed_by` is the
    GCPBackendPolicy whose `timeoutSec` is the request deadline, when it is the shorter one.
    `authenticator` checks credentials when a SecurityPolicy with apiKeyAuth or jwt applies.
    """

    backend: Backend
    candidates: tuple[str, ...]
    breaker: CircuitBreaker
    timeouts: Timeouts
    connections: ConnectionSettings
    retry: RetryPolicy | None = None
    rate_limiter: LocalRateLimiter | None = None
    outlier: OutlierState | None = None
    balancer: PoolBalancer | None = None
    picker: PoolPicker | None = None
    timed_by: BackendPolicySpec | None = None
    authenticator: Authenticator | None = None

    @property
    def key(self) -> str:
        """The backendRef's key (`httproute/NS/NAME/rule/I/backend/J`)."""
        return self.backend.key

    @property
    def pool(self) -> Pool | None:
        """The InferencePool behind this backendRef, if it is one."""
        return self.backend.pool

    def __repr__(self) -> str:
        return (f"<BackendCluster {self.key} endpoints={len(self.candidates)} {self.breaker!r}"
                f" retry={self.retry is not None} outlier={self.outlier is not None}>")


@dataclass(frozen=True, slots=True, eq=False)
class Runtime:
    """One snapshot with the runtime objects built for it; swapped as one value."""

    snapshot: Snapshot
    clusters: Mapping[str, BackendCluster] = field(default_factory=lambda: MappingProxyType({}))
    pickers: Mapping[str, PoolPicker] = field(default_factory=lambda: MappingProxyType({}))
    # Rate limiters per BackendTrafficPolicy (ns, name): a policy's buckets are shared by the
    # backendRefs it targets, as before runtimes existed.
    limiters: Mapping[tuple[str, str], LocalRateLimiter] = field(
        default_factory=lambda: MappingProxyType({}))
    # Authenticators per SecurityPolicy (ns, name), shared by the backendRefs it applies to.
    authenticators: Mapping[tuple[str, str], Authenticator] = field(
        default_factory=lambda: MappingProxyType({}))

    def breakers(self) -> Iterator[tuple[str, CircuitBreaker]]:
        """(backendRef key, breaker) pairs, for metrics and status."""
        return ((key, c.breaker) for key, c in self.clusters.items())


def profile_of(pool: Pool, default: str) -> str:
    """The endpoint-picker profile a pool asks for (its annotation), else `default`."""
    return pool.annotations.get(SCHEDULER_PROFILE_ANNOTATION, default)


def build_runtime(snapshot: Snapshot, previous: Runtime | None, settings: RuntimeSettings,
                  store: EndpointStore) -> Runtime:
    """Build the runtime of `snapshot`, carrying live state over from `previous`."""
    pickers = _pickers(snapshot, previous, settings, store)
    limiters = _limiters(snapshot, previous)
    authenticators = _authenticators(snapshot, previous)
    old = previous.clusters if previous is not None else {}
    clusters: dict[str, BackendCluster] = {}
    for route in snapshot.routes:
        for rule in route.rules:
            for backend in rule.backends:
                if backend.error is not None:
                    continue  # answered 500 while resolving; never reaches a cluster
                cluster = _cluster(snapshot, rule, backend, old.get(backend.key), settings,
                                   pickers, limiters)
                if rule.security is not None:
                    cluster.authenticator = authenticators.get(rule.security.key)
                clusters[backend.key] = cluster
    return Runtime(snapshot, MappingProxyType(clusters), MappingProxyType(pickers),
                   MappingProxyType(limiters), MappingProxyType(authenticators))


def _pickers(snapshot: Snapshot, previous: Runtime | None, settings: RuntimeSettings,
             store: EndpointStore) -> dict[str, PoolPicker]:
    """One picker per pool; a pool that keeps its profile keeps its picker (prefix index)."""
    out: dict[str, PoolPicker] = {}
    for key, pool in snapshot.pools.items():
        profile = profile_of(pool, settings.scheduler_profile)
        found = previous.pickers.get(key) if previous is not None else None
        if found is not None and found.profile == profile:
            found.scheduler.retain(pool.addresses)
            out[key] = found
            continue
        config = _scheduler_config(profile, settings)
        out[key] = PoolPicker(profile, build_scheduler(
            config, store, seed=settings.seed, timings=settings.scheduler_timings,
            kv_events=settings.kv_events))
    return out


def kv_event_targets(runtime: Runtime) -> dict[KVEventsSource, list[str]]:
    """The endpoints whose KV events each source must follow: those of every pool whose picker
    has a plugin fed by that source."""
    out: dict[KVEventsSource, dict[str, None]] = {}
    for key, picker in runtime.pickers.items():
        addresses = runtime.snapshot.pools[key].addresses
        for weighted in picker.scheduler.profile.scorers:
            if isinstance(weighted.scorer, UsesKVEvents):
                out.setdefault(weighted.scorer.kv_events_source, {}).update(
                    dict.fromkeys(addresses))
    return {source: list(addresses) for source, addresses in out.items()}


def _scheduler_config(profile: str, settings: RuntimeSettings) -> SchedulerConfig:
    """The named profile (built-in or from --scheduler-config) with the gateway's metrics
    staleness, unless a custom profile sets its own."""
    config = settings.custom_profiles.get(profile)
    if config is None:
        return SchedulerConfig(profile=profile, staleness=settings.staleness)
    if "staleness" in config.model_fields_set:
        return config
    return config.model_copy(update={"staleness": settings.staleness})


def _limiters(snapshot: Snapshot, previous: Runtime | None
              ) -> dict[tuple[str, str], LocalRateLimiter]:
    """One rate limiter per policy with rules; unchanged rules keep their buckets."""
    out: dict[tuple[str, str], LocalRateLimiter] = {}
    for route in snapshot.routes:
        for rule in route.rules:
            policy = rule.policy
            if policy is None or not policy.rate_limits:
                continue
            key = (policy.namespace, policy.name)
            if key in out:
                continue
            found = previous.limiters.get(key) if previous is not None else None
            if found is not None and found.rules == policy.rate_limits:
                out[key] = found
            else:
                out[key] = LocalRateLimiter(policy.rate_limits)
    return out


def _authenticators(snapshot: Snapshot, previous: Runtime | None
                    ) -> dict[tuple[str, str], Authenticator]:
    """One authenticator per SecurityPolicy that checks something (apiKeyAuth or jwt); an
    unchanged policy keeps the one it had."""
    out: dict[tuple[str, str], Authenticator] = {}
    for route in snapshot.routes:
        for rule in route.rules:
            spec = rule.security
            if spec is None or spec.key in out or (spec.api_key is None and spec.jwt is None):
                continue
            found = previous.authenticators.get(spec.key) if previous is not None else None
            out[spec.key] = found if found is not None and found.spec == spec \
                else Authenticator(spec)
    return out


def _cluster(snapshot: Snapshot, rule: RouteRule, backend: Backend,
             previous: BackendCluster | None, settings: RuntimeSettings,
             pickers: Mapping[str, PoolPicker],
             limiters: Mapping[tuple[str, str], LocalRateLimiter]) -> BackendCluster:
    policy = rule.policy
    limits = policy.circuit_breaker if policy is not None else None
    limits = limits if limits is not None else BreakerLimits()
    # Same limits: keep the breaker, so requests in flight and waiters stay counted.
    breaker = (previous.breaker if previous is not None and previous.breaker.limits == limits
               else CircuitBreaker(limits))
    timeouts = resolve_timeouts(
        rule.effective_request_timeout, None,
        connect=_connect_timeout(policy, settings),
        per_try=_per_try_timeout(rule),
    )
    connections = ConnectionSettings(
        connect_timeout=timeouts.connect,
        max_requests_per_connection=limits.max_requests_per_connection,
        **({"idle_timeout": policy.connection_idle_timeout}
           if policy is not None and policy.connection_idle_timeout is not None else {}),
    )
    pool = backend.pool
    if pool is None:
        assert backend.host is not None and backend.port is not None
        candidates: tuple[str, ...] = (Endpoint(backend.host, backend.port).address,)
    else:
        candidates = pool.addresses
    cluster = BackendCluster(
        backend=backend,
        candidates=candidates,
        breaker=breaker,
        timeouts=timeouts,
        connections=connections,
        retry=RetryPolicy(policy.retry) if policy is not None and policy.retry else None,
        rate_limiter=(limiters.get((policy.namespace, policy.name))
                      if policy is not None else None),
    )
    if pool is not None:
        cluster.picker = pickers[pool.key]
        cluster.outlier = _outlier(policy, pool, previous)
        spec = snapshot.backend_policies.get(pool.key)
        if (cluster.outlier is not None or pool.key in snapshot.health_checks
                or (spec is not None and spec.mode is not None)):
            cluster.balancer = PoolBalancer(pool, spec, settings.region_order)
        cluster.timed_by = _timed_by(spec, timeouts.total)
    return cluster


def _per_try_timeout(rule: RouteRule) -> float | None:
    """`retry.perRetry.timeout`, else HTTPRoute `timeouts.backendRequest` (both bound one
    attempt, from sending the request to the end of its response)."""
    policy = rule.policy
    if policy is not None and policy.retry is not None and policy.retry.per_retry_timeout:
        return policy.retry.per_retry_timeout
    return rule.backend_request_timeout


def _connect_timeout(policy: TrafficPolicy | None, settings: RuntimeSettings) -> float:
    if policy is not None and policy.connect_timeout is not None:
        return policy.connect_timeout
    return settings.connect_timeout


def _outlier(policy: TrafficPolicy | None, pool: Pool,
             previous: BackendCluster | None) -> OutlierState | None:
    spec = policy.outlier if policy is not None else None
    if spec is None:
        return None
    found = previous.outlier if previous is not None else None
    if found is None or found.spec != spec:
        found = OutlierState(spec, OutlierDetector(spec))
    found.detector.update_endpoints(pool.addresses)
    return found


def _timed_by(spec: BackendPolicySpec | None, route_total: float | None
              ) -> BackendPolicySpec | None:
    """The GCPBackendPolicy whose timeoutSec bounds the request, when it is the shorter limit."""
    if spec is None or spec.timeout is None:
        return None
    if route_total is not None and route_total <= spec.timeout:
        return None
    return spec

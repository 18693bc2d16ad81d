"""The immutable runtime snapshot the data plane reads: listeners, routes, pools, models, policies.

Built once per (re)load by `poolgate.config.build.load_snapshot` and swapped atomically; nothing in
it changes afterwards, so request handlers read it without locks.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from poolgate.auth.spec import SecuritySpec
from poolgate.balancing.spec import BackendPolicySpec
from poolgate.config.matching import RouteMatch, normalize_host
from poolgate.config.policy import TrafficPolicy
from poolgate.core.pools import Criticality, Endpoint, Pool
from poolgate.datalayer.health_spec import ActiveHealthCheckSpec

_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class TargetModel:
    """A model name an InferenceModel may rewrite the request's `model` to, with its weight."""

    name: str
    weight: int


@dataclass(frozen=True, slots=True)
class InferenceModelSpec:
    """A served model name on a pool: criticality and target-model split."""

    namespace: str
    name: str
    model_name: str
    criticality: Criticality | None
    target_models: tuple[TargetModel, ...]
    pool_key: str


@dataclass(frozen=True, slots=True)
class ObjectiveSpec:
    """An InferenceObjective: a request priority (higher is more important; unset is 0)."""

    namespace: str
    name: str
    priority: int
    pool_key: str


@dataclass(frozen=True, slots=True)
class Backend:
    """One resolved backendRef of a route rule.

    Exactly one of `pool`, (`host`, `port`) or `error` is set. `key` is unique per backendRef
    (`httproute/NS/NAME/rule/I/backend/J`); circuit breakers count per key. A backend with an
    `error` answers 500 with that message; weight 0 gets no traffic.
    """

    kind: str
    name: str
    namespace: str
    weight: int
    key: str
    pool: Pool | None = None
    host: str | None = None
    port: int | None = None
    error: str | None = None
    # Why it did not resolve, as a Gateway API ResolvedRefs reason (BackendNotFound, ...).
    error_reason: str | None = None


@dataclass(frozen=True, slots=True)
class HeaderModifier:
    """RequestHeaderModifier: `set` replaces, `add` appends, `remove` deletes (names as written)."""

    set: tuple[tuple[str, str], ...] = ()
    add: tuple[tuple[str, str], ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class URLRewrite:
    """URLRewrite: at most one of `full_path` and `prefix_replacement`, and/or a hostname."""

    hostname: str | None = None
    full_path: str | None = None
    prefix_replacement: str | None = None


@dataclass(frozen=True, slots=True)
class RouteRule:
    """One HTTPRoute rule with its backends, filters, timeout and attached policy."""

    index: int
    matches: tuple[RouteMatch, ...]
    backends: tuple[Backend, ...]
    header_modifier: HeaderModifier | None = None
    url_rewrite: URLRewrite | None = None
    request_timeout: float | None = None
    policy: TrafficPolicy | None = None
    backend_request_timeout: float | None = None
    name: str | None = None
    security: SecuritySpec | None = None  # the SecurityPolicy that applies (rule > route > Gateway)

    @property
    def effective_request_timeout(self) -> float | None:
        """HTTPRoute `timeouts.request`, else the policy's `timeout.http.requestTimeout`, else None."""
        if self.request_timeout is not None:
            return self.request_timeout
        return self.policy.request_timeout if self.policy is not None else None


@dataclass(frozen=True, slots=True)
class Route:
    """An attached HTTPRoute: hostnames it serves and the listener ports it is attached to."""

    namespace: str
    name: str
    hostnames: tuple[str, ...]
    rules: tuple[RouteRule, ...]
    ports: tuple[int, ...]

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True, slots=True)
class Listener:
    """A Gateway listener poolgate serves."""

    name: str
    port: int
    protocol: str
    hostname: str | None = None
    gateway: str = ""  # "namespace/name" of the Gateway


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """The outcome of matching a request: the route, the rule, and the matched path prefix."""

    route: Route
    rule: RouteRule
    matched_prefix: str | None


@dataclass(frozen=True, slots=True)
class Candidate:
    """A (route, rule, match) on a port, in precedence order inside its hostname group."""

    match: RouteMatch
    decision: RouteDecision


@dataclass(frozen=True, slots=True)
class CandidateGroup:
    """The candidates of one hostname group, pre-filtered by the path's first segment.

    Exact and PathPrefix matches can only match paths starting with their own first segment,
    so each segment gets the (order-preserving) sublist of candidates that could match it.
    """

    by_segment: Mapping[str, tuple[Candidate, ...]]
    any_segment: tuple[Candidate, ...]  # regex and `/` prefix matches, for other segments

    @classmethod
    def of(cls, ordered: tuple[Candidate, ...]) -> CandidateGroup:
        """Index candidates already in precedence order."""
        segments = {c.match.first_segment for c in ordered} - {None}
        by_segment = {
            seg: tuple(c for c in ordered if c.match.first_segment in (seg, None))
            for seg in segments if seg is not None
        }
        return cls(by_segment, tuple(c for c in ordered if c.match.first_segment is None))

    def for_path(self, path: str) -> tuple[Candidate, ...]:
        """The candidates that could match `path`, in precedence order."""
        end = path.find("/", 1)
        found = self.by_segment.get(path[1:end] if end > 0 else path[1:])
        return self.any_segment if found is None else found


_NO_CANDIDATES = CandidateGroup({}, ())


@dataclass(frozen=True, slots=True)
class RouteTable:
    """The candidates of one listener port, grouped by hostname (like Envoy virtual hosts)."""

    exact: Mapping[str, CandidateGroup]
    wildcards: tuple[tuple[str, CandidateGroup], ...]  # (".suffix", ...), longest first
    default: CandidateGroup = _NO_CANDIDATES

    def group(self, host: str) -> CandidateGroup:
        """The hostname group for a normalized host: exact, else longest wildcard, else default."""
        found = self.exact.get(host)
        if found is not None:
            return found
        for suffix, group in self.wildcards:
            if host.endswith(suffix) and len(host) > len(suffix):
                return group
        return self.default


@dataclass(frozen=True, slots=True, eq=False)
class Snapshot:
    """Everything the data plane needs, resolved and immutable."""

    listeners: tuple[Listener, ...]
    envoy_headers: bool
    pools: Mapping[str, Pool]
    routes: tuple[Route, ...] = ()
    inference_models: Mapping[tuple[str, str], InferenceModelSpec] = field(default_factory=lambda: MappingProxyType({}))
    objectives: Mapping[str, ObjectiveSpec] = field(default_factory=lambda: MappingProxyType({}))
    tables: Mapping[int, RouteTable] = field(default_factory=lambda: MappingProxyType({}))
    # Multi-cluster: an import (GCPInferencePoolImport / InferencePoolImport) by ns/name, the
    # union of the exported declarations of that pool; GCPBackendPolicy and the active health
    # check (HealthCheckPolicy, else a BackendTrafficPolicy's healthCheck.active) per pool key.
    imports: Mapping[str, Pool] = field(default_factory=lambda: MappingProxyType({}))
    backend_policies: Mapping[str, BackendPolicySpec] = field(
        default_factory=lambda: MappingProxyType({}))
    health_checks: Mapping[str, ActiveHealthCheckSpec] = field(
        default_factory=lambda: MappingProxyType({}))

    def route(
        self,
        port: int,
        host: str,
        method: str,
        path: str,
        headers: Mapping[str, str],
        query: Mapping[str, str],
    ) -> RouteDecision | None:
        """The rule a request goes to, or None (404).

        `host` is the raw Host header (port and case ignored), `path` excludes the query string,
        `headers` have lower-case keys. Pure; the candidate order is fixed at build time.
        """
        table = self.tables.get(port)
        if table is None:
            return None
        for candidate in table.group(normalize_host(host)).for_path(path):
            if candidate.match.matches(method, path, headers, query):
                return candidate.decision
        return None

    def inference_model(self, pool_key: str, model: str) -> InferenceModelSpec | None:
        """The InferenceModel serving `model` on a pool, if any."""
        return self.inference_models.get((pool_key, model))

    def objective(self, name: str) -> ObjectiveSpec | None:
        """The InferenceObjective named in `x-gateway-inference-objective`, if any."""
        return self.objectives.get(name)

    def all_endpoints(self) -> tuple[Endpoint, ...]:
        """Every endpoint of every pool, each address once (first pool's labels win)."""
        seen: dict[str, Endpoint] = {}
        for pool in self.pools.values():
            for ep in pool.endpoints:
                seen.setdefault(ep.address, ep)
        return tuple(seen.values())

    def models(self) -> tuple[str, ...]:
        """InferenceModel names, sorted and unique (for `/v1/models`)."""
        return tuple(sorted({spec.model_name for spec in self.inference_models.values()}))

    def pool_models(self, pool_key: str) -> tuple[str, ...]:
        """The model names the InferenceModels of one pool serve, sorted."""
        return tuple(sorted(name for key, name in self.inference_models if key == pool_key))

    def has_address_backends(self) -> bool:
        """Whether any attached route rule sends traffic to a plain host:port backend."""
        return any(
            b.host is not None and b.weight > 0
            for route in self.routes for rule in route.rules for b in rule.backends
        )

    def listener_ports(self) -> tuple[int, ...]:
        """The distinct ports to bind, sorted."""
        return tuple(sorted({listener.port for listener in self.listeners}))

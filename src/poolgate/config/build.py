"""Resolve loaded resources into one immutable Snapshot: `load_snapshot(paths)`."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import MappingProxyType
from typing import TypeVar

from poolgate.api import envoy, gateway, inference, local, security
from poolgate.api.kinds import ENVOY_GROUP, GATEWAY_GROUP
from poolgate.api.loader import HeldDocument, LoadedManifests, LoadedResource, load_manifests
from poolgate.api.problems import Problem
from poolgate.auth.spec import SecuritySpec
from poolgate.config._report import Report
from poolgate.config.gke import (
    exported_metrics,
    resolve_backend_policies,
    resolve_health_check_policies,
)
from poolgate.config.inference_models import resolve_inference_models, resolve_objectives
from poolgate.config.multicluster import (
    CLUSTER_ANNOTATION,
    REGION_ANNOTATION,
    import_of,
    is_exported,
    merge_declarations,
    place_endpoints,
    with_imports,
)
from poolgate.config.outcomes import (
    ACCEPTED,
    UNSUPPORTED_PROTOCOL,
    ListenerOutcome,
    Outcomes,
    RefProblem,
)
from poolgate.config.policies import traffic_policy
from poolgate.config.policy import TrafficPolicy
from poolgate.config.routes import (
    Attachment,
    GatewayListeners,
    PlacedRoute,
    attach_route,
    build_tables,
    compile_rule,
)
from poolgate.config.security import HeldDocuments, security_policy
from poolgate.config.snapshot import Listener, Route, Snapshot
from poolgate.core.pools import Endpoint, Pool
from poolgate.datalayer.health_spec import ActiveHealthCheckSpec
from poolgate.discovery.local import LocalEndpointSource
from poolgate.discovery.source import EndpointSource
from poolgate.scheduling.profiles import BUILTIN_PROFILES

# Which endpoint-picker profile serves an InferencePool (else `poolgate serve --scheduler-profile`).
SCHEDULER_PROFILE_ANNOTATION = "poolgate.dev/scheduler-profile"
PROFILE_NAMES = frozenset(BUILTIN_PROFILES)

SERVED_PROTOCOLS = frozenset({"HTTP"})

# Kinds where a second definition of a name replaces the first, as a later `kubectl apply` of the
# same object would: seed 002 ships three alternative GCPBackendPolicies with one name.
REPLACED_BY_LATER = frozenset({"GCPBackendPolicy", "HealthCheckPolicy"})

_Policy = TypeVar("_Policy", TrafficPolicy, SecuritySpec)


@dataclass(frozen=True, slots=True)
class LoadResult:
    """The snapshot (None when any error was found), every problem, and what was read."""

    snapshot: Snapshot | None
    problems: tuple[Problem, ...]
    loaded: Mapping[str, int] = field(default_factory=dict)  # kind -> count
    skipped: Mapping[str, int] = field(default_factory=dict)  # kind -> count
    # What was decided about each object, for `status` (see config/outcomes.py).
    outcomes: Outcomes = field(default_factory=Outcomes)

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Problems of severity error."""
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """Problems of severity warning."""
        return tuple(p for p in self.problems if p.severity == "warning")


def load_snapshot(
    paths: Sequence[Path], port_overrides: Mapping[int, int] | None = None,
    profiles: Collection[str] = PROFILE_NAMES, cluster: EndpointSource | None = None,
) -> LoadResult:
    """Load manifests from files/directories and resolve them into a Snapshot.

    `port_overrides` maps a listener port in the manifests to the port actually served
    (`poolgate serve --port`). Route matching and parentRef ports use the manifest ports.
    `profiles` are the scheduler profile names a pool's annotation may use (the built-in ones,
    plus those of `--scheduler-config`). `cluster`, when given, adds the endpoints it knows (the
    Ready pods of `--discovery kubernetes`) to those LocalEndpoints declare.
    """
    return resolve(load_manifests(paths), port_overrides, profiles, cluster)


def resolve(
    manifests: LoadedManifests, port_overrides: Mapping[int, int] | None = None,
    profiles: Collection[str] = PROFILE_NAMES, cluster: EndpointSource | None = None,
    foreign_gateways: frozenset[str] = frozenset(),
) -> LoadResult:
    """Resolve loaded manifests (files, or objects read from the API) into a Snapshot; as
    `load_snapshot`. `foreign_gateways` (namespace/name): Gateways of a class another controller
    implements, left out of the manifests; parentRefs to them are ignored without a word."""
    report = Report()
    resources = _without_duplicates(manifests.resources, report)
    builder = _Builder(resources, report, dict(port_overrides or {}), frozenset(profiles),
                       cluster, manifests.held, foreign_gateways)
    snapshot = builder.build()
    problems = tuple(manifests.problems) + tuple(report.problems)
    has_error = any(p.severity == "error" for p in problems)
    loaded = Counter(r.resource.kind for r in manifests.resources)
    skipped = Counter(manifests.skipped)
    for used in builder.held.used:  # Secrets and ConfigMaps a SecurityPolicy read
        loaded[used.resource.kind] += 1
        skipped[used.resource.kind] -= 1
    return LoadResult(
        None if has_error else snapshot, problems, dict(sorted(loaded.items())),
        dict(sorted((kind, n) for kind, n in skipped.items() if n > 0)), report.outcomes,
    )


def _without_duplicates(resources: Sequence[LoadedResource], report: Report) -> list[LoadedResource]:
    first: dict[tuple[str, str, str], LoadedResource] = {}
    out: list[LoadedResource] = []
    for r in resources:
        # One InferencePool name may be declared once per cluster (poolgate.dev/cluster).
        cluster = (r.resource.metadata.annotations.get(CLUSTER_ANNOTATION, "")
                   if r.resource.kind == "InferencePool" else "")
        key = (r.resource.kind, r.resource.key, cluster)
        if key in first:
            prior = first[key].source
            where = f"{prior.file}:{prior.line}" if prior.line else prior.file
            if r.resource.kind in REPLACED_BY_LATER:
                report.warning(r, f"{r.resource.kind} {r.resource.key} is defined again (first at "
                                  f"{where}, doc {prior.doc_index}); as with kubectl apply, this "
                                  "later definition replaces it")
                out[out.index(first[key])] = r
                first[key] = r
                continue
            report.error(r, f"duplicate {r.resource.kind} {r.resource.key} "
                            f"(first defined at {where}, doc {prior.doc_index})")
            continue
        first[key] = r
        out.append(r)
    return out


class _Builder:
    """One snapshot build: resolves references in dependency order."""

    def __init__(self, resources: list[LoadedResource], report: Report,
                 port_overrides: dict[int, int], profiles: frozenset[str] = PROFILE_NAMES,
                 cluster: EndpointSource | None = None, held: Sequence[HeldDocument] = (),
                 foreign_gateways: frozenset[str] = frozenset()) -> None:
        self.report = report
        self.foreign_gateways = foreign_gateways
        self.held = HeldDocuments(held, report)
        self._warned: set[tuple[tuple[str, str], str, str]] = set()
        self.port_overrides = port_overrides
        self.profiles = profiles
        self.cluster = cluster
        self.by_kind: dict[str, list[LoadedResource]] = {}
        for r in resources:
            self.by_kind.setdefault(r.resource.kind, []).append(r)
        self.order = {id(r): i for i, r in enumerate(resources)}

    def of(self, kind: str) -> list[LoadedResource]:
        """Loaded resources of one kind, in load order."""
        return self.by_kind.get(kind, [])

    def build(self) -> Snapshot:
        """The snapshot; problems go to the report (the caller drops it on any error)."""
        source = LocalEndpointSource(
            r.resource for r in self.of("LocalEndpoints")
            if isinstance(r.resource, local.LocalEndpoints)
        )
        pools, imports = self.pools(source)
        gateways = self.gateways()
        listeners = tuple(lst for g in gateways.values() for _, lst in g.listeners)
        policies = self.backend_policies(gateways)
        grants = [r.resource for r in self.of("ReferenceGrant")
                  if isinstance(r.resource, gateway.ReferenceGrant)]
        securities = self.security_policies(gateways, grants)
        placed: list[PlacedRoute] = []
        for loaded in self.of("HTTPRoute"):
            route = loaded.resource
            assert isinstance(route, gateway.HTTPRoute)
            attachments = attach_route(loaded, gateways, self.report, self.foreign_gateways)
            # Most specific wins: rule (sectionName), route, then the first attached Gateway's.
            gw_policy = next((policies[("Gateway", a.gateway_key, "")] for a in attachments
                              if ("Gateway", a.gateway_key, "") in policies), None)
            route_policy = policies.get(("HTTPRoute", route.key, ""))
            rules = []
            for i, rule in enumerate(route.spec.rules):
                rule_policy = policies.get(("HTTPRoute", route.key, rule.name)) if rule.name else None
                policy = rule_policy or route_policy or gw_policy
                scratch = Report()
                one = compile_rule(loaded, i, rule, pools, source, grants, policy, scratch,
                                   in_cluster=self.cluster is not None)
                one = replace(one, security=self.security_for(route, rule.name, attachments,
                                                               securities))
                one, replaced = with_imports(rule, one, route.namespace, imports, pools, grants)
                # The generic resolution warned that import kinds are unsupported: drop that.
                stale = tuple(f"spec.rules[{i}].backendRefs[{j}]: " for j in replaced)
                self.report.problems.extend(p for p in scratch.problems
                                            if not p.message.startswith(stale) or not stale)
                for j in replaced:
                    b = one.backends[j]
                    if b.error is not None:
                        self.report.warning(loaded, f"spec.rules[{i}].backendRefs[{j}]: "
                                                    f"{b.error}; requests sent to it get 500")
                self.report.outcomes.route_refs.setdefault(route.key, []).extend(
                    RefProblem(b.error_reason, f"spec.rules[{i}].backendRefs[{j}]: {b.error}")
                    for j, b in enumerate(one.backends)
                    if b.error is not None and b.error_reason is not None)
                rules.append(one)
            if not attachments:
                continue
            hostnames = tuple(dict.fromkeys(
                h for a in attachments for h in (a.hostnames or ())))
            ports = tuple(sorted({a.listener.port for a in attachments}))
            compiled = Route(route.namespace, route.name, hostnames, tuple(rules), ports)
            order = (route.metadata.creation_timestamp or "", self.order[id(loaded)])
            placed.append(PlacedRoute(compiled, order, tuple(attachments)))
        models = resolve_inference_models(self.of("InferenceModel"), pools, self.report)
        objectives = resolve_objectives(self.of("InferenceObjective"), pools, self.report)
        exports = exported_metrics(self.of("AutoscalingMetric"))
        backend_policies = resolve_backend_policies(self.of("GCPBackendPolicy"), pools, exports,
                                                    self.report)
        health_checks = resolve_health_check_policies(self.of("HealthCheckPolicy"), pools,
                                                      self.report)
        _add_traffic_policy_checks(health_checks, placed)
        if not listeners and (self.by_kind):
            first = next(iter(self.by_kind.values()))[0]
            self.report.warning(first, "no Gateway with an HTTP listener: nothing will be served")
        return Snapshot(
            listeners=listeners,
            envoy_headers=self.envoy_headers(gateways),
            pools=MappingProxyType(pools),
            routes=tuple(p.route for p in placed),
            inference_models=MappingProxyType(models),
            objectives=MappingProxyType(objectives),
            tables=MappingProxyType(build_tables(placed)),
            imports=MappingProxyType(imports),
            backend_policies=MappingProxyType(backend_policies),
            health_checks=MappingProxyType(health_checks),
        )

    def pools(self, source: LocalEndpointSource) -> tuple[dict[str, Pool], dict[str, Pool]]:
        """InferencePools of both versions keyed ns/name with their endpoints found, and the
        imports (the union of each pool's exported declarations) keyed the same way."""
        declared: dict[str, list[Pool]] = {}
        for loaded in self.of("InferencePool"):
            pool = self.declaration(loaded, source)
            if pool is not None:
                declared.setdefault(pool.key, []).append(pool)
        pools = {key: merge_declarations(decls) for key, decls in declared.items()}
        imports = {key: found for key, decls in declared.items()
                   if (found := import_of(decls)) is not None}
        return pools, imports

    def declaration(self, loaded: LoadedResource, source: LocalEndpointSource) -> Pool | None:
        """One InferencePool document (one cluster's copy of the pool) with its endpoints."""
        res = loaded.resource
        if isinstance(res, inference.InferencePoolV1Alpha2):
            ports = [res.spec.target_port_number]
            selector = res.spec.selector
            ext = res.spec.extension_ref
            failure_mode = ext.failure_mode if ext else "FailClose"
            picker = ext.name if ext else None
        elif isinstance(res, inference.InferencePoolV1):
            ports = [p.number for p in res.spec.target_ports]
            selector = res.spec.selector.match_labels
            epp = res.spec.endpoint_picker_ref
            failure_mode = epp.failure_mode if epp else "FailClose"
            picker = epp.name if epp else None
        else:
            return None
        annotations = dict(res.metadata.annotations)
        cluster = annotations.get(CLUSTER_ANNOTATION) or None
        region = annotations.get(REGION_ANNOTATION) or None
        seen: dict[str, Endpoint] = {}
        for port in ports:
            found = source.endpoints_for(res.namespace, selector, port)
            if self.cluster is not None:
                found = found + self.cluster.endpoints_for(res.namespace, selector, port)
            for ep in place_endpoints(found, cluster, region):
                seen.setdefault(ep.address, ep)
        if not seen:
            labels = ",".join(f"{k}={v}" for k, v in selector.items())
            where = f" in cluster {cluster}" if cluster else ""
            what = "Ready pods or LocalEndpoints" if self.cluster is not None else "LocalEndpoints"
            self.report.warning(loaded, f"no {what} in namespace {res.namespace}{where} "
                                        f"match selector {labels}; the pool will answer 503")
        profile = annotations.get(SCHEDULER_PROFILE_ANNOTATION)
        if profile is not None and profile not in self.profiles:
            self.report.error(loaded, f"metadata.annotations[{SCHEDULER_PROFILE_ANNOTATION}]: "
                                      f"unknown scheduler profile {profile!r}; choose one of "
                                      f"{', '.join(sorted(self.profiles))}")
        return Pool(
            res.namespace, res.name, ports[0], MappingProxyType(dict(selector)),
            tuple(seen.values()), failure_mode, picker, MappingProxyType(annotations),
            exported=is_exported(annotations),
        )

    def gateways(self) -> dict[str, GatewayListeners]:
        """Gateways keyed ns/name with the listeners poolgate serves (ports overridden)."""
        proxies = {r.resource.key for r in self.of("EnvoyProxy")}
        out: dict[str, GatewayListeners] = {}
        for loaded in self.of("Gateway"):
            gw = loaded.resource
            assert isinstance(gw, gateway.Gateway)
            infra = gw.spec.infrastructure
            ref = infra.parameters_ref if infra else None
            if ref is not None:
                target = f"{ref.namespace or gw.namespace}/{ref.name}"
                if ref.group != ENVOY_GROUP or ref.kind != "EnvoyProxy":
                    self.report.warning(loaded, f"spec.infrastructure.parametersRef kind "
                                                f"{ref.kind} is not supported and is ignored")
                elif target not in proxies:
                    self.report.warning(loaded, f"spec.infrastructure.parametersRef: EnvoyProxy "
                                                f"{target} not found")
            names: set[str] = set()
            listeners = []
            outcomes = self.report.outcomes.listeners.setdefault(gw.key, [])
            for spec in gw.spec.listeners:
                if spec.name in names:
                    self.report.error(loaded, f"listener name {spec.name} is used twice")
                    continue
                names.add(spec.name)
                if spec.protocol not in SERVED_PROTOCOLS:
                    message = (f"listener {spec.name}: protocol {spec.protocol} is not "
                               "supported (HTTP only); it is not served")
                    self.report.warning(loaded, message)
                    outcomes.append(ListenerOutcome(spec.name, False, UNSUPPORTED_PROTOCOL,
                                                    message))
                    continue
                outcomes.append(ListenerOutcome(spec.name, True, ACCEPTED, "Listener is accepted"))
                port = self.port_overrides.get(spec.port, spec.port)
                hostname = spec.hostname.lower() if spec.hostname else None
                listeners.append((spec, Listener(spec.name, port, spec.protocol, hostname,
                                                  gw.key)))
            out[gw.key] = GatewayListeners(loaded, gw, tuple(listeners))
        return out

    def _targets(self, loaded: LoadedResource, spec: envoy.PolicySpec, gateways: Mapping[str, object],
                 routes: Mapping[str, gateway.HTTPRoute], listener_error: bool = False,
                 ) -> list[tuple[str, str, str | None]]:
        """(kind, key, sectionName) of each resolvable target; unresolved ones are warned about
        (a Gateway listener target is an error when `listener_error`)."""
        ns = loaded.resource.namespace
        out = []
        if not spec.targets:
            self.report.error(loaded, "spec.targetRef or spec.targetRefs is required")
        for t in spec.targets:
            key = f"{ns}/{t.name}"
            if t.group != GATEWAY_GROUP or t.kind not in ("Gateway", "HTTPRoute"):
                self.report.warning(loaded, f"target {t.kind} {t.name}: only Gateway and "
                                            "HTTPRoute targets are supported; ignored")
            elif t.kind == "Gateway" and key not in gateways:
                self.report.warning(loaded, f"target Gateway {key} not found; the policy does "
                                            "not apply to it")
            elif t.kind == "HTTPRoute" and key not in routes:
                self.report.warning(loaded, f"target HTTPRoute {key} not found; the policy does "
                                            "not apply to it")
            elif t.kind == "Gateway" and t.section_name is not None:
                (self.report.error if listener_error else self.report.warning)(
                    loaded, f"target Gateway {key} sectionName {t.section_name}: listener-level "
                            "policies are not supported" + ("" if listener_error else "; ignored"))
            else:
                out.append((t.kind, key, t.section_name))
        return out

    def backend_policies(
        self, gateways: Mapping[str, GatewayListeners]
    ) -> dict[tuple[str, str, str], TrafficPolicy]:
        """BackendTrafficPolicies by (target kind, target ns/name, rule sectionName or "")."""
        return self._by_target("BackendTrafficPolicy", gateways,
                               lambda loaded: traffic_policy(loaded, self.report))

    def security_policies(
        self, gateways: Mapping[str, GatewayListeners], grants: Sequence[gateway.ReferenceGrant]
    ) -> dict[tuple[str, str, str], SecuritySpec]:
        """SecurityPolicies by (target kind, target ns/name, rule sectionName or "")."""
        return self._by_target("SecurityPolicy", gateways,
                               lambda loaded: security_policy(loaded, self.held, grants,
                                                              self.report))

    def _by_target(
        self, kind_name: str, gateways: Mapping[str, GatewayListeners],
        resolve: Callable[[LoadedResource], _Policy],
    ) -> dict[tuple[str, str, str], _Policy]:
        """Envoy Gateway policies of one kind, resolved, by (target kind, target ns/name, rule
        sectionName or ""); for two on one target the older wins."""
        routes = {r.resource.key: r.resource for r in self.of("HTTPRoute")
                  if isinstance(r.resource, gateway.HTTPRoute)}
        out: dict[tuple[str, str, str], _Policy] = {}
        for loaded in self.of(kind_name):
            res = loaded.resource
            assert isinstance(res, envoy.BackendTrafficPolicy | security.SecurityPolicy)
            policy = resolve(loaded)
            # A SecurityPolicy on one listener cannot be honoured: refusing it fails closed.
            strict = kind_name == "SecurityPolicy"
            for kind, key, section in self._targets(loaded, res.spec, gateways, routes, strict):
                if section is not None and not any(
                    rule.name == section for rule in routes[key].spec.rules
                ):
                    self.report.warning(loaded, f"target HTTPRoute {key} has no rule named "
                                                f"{section}; the policy does not apply")
                    continue
                slot = (kind, key, section or "")
                prior = out.get(slot)
                if prior is not None:
                    self.report.warning(loaded, f"{kind} {key} already has {kind_name} "
                                                f"{prior.namespace}/{prior.name}; the older "
                                                "policy wins and this one is ignored for it")
                    continue
                out[slot] = policy
        return out

    def security_for(self, route: gateway.HTTPRoute, rule_name: str | None,
                     attachments: Sequence[Attachment],
                     securities: Mapping[tuple[str, str, str], SecuritySpec]) -> SecuritySpec | None:
        """The SecurityPolicy of one rule: rule > route > the first attached Gateway's, the most
        specific whole (warned about when it drops the authentication of a less specific one)."""
        rule_level = securities.get(("HTTPRoute", route.key, rule_name)) if rule_name else None
        gateway_level = next((securities[("Gateway", a.gateway_key, "")] for a in attachments
                              if ("Gateway", a.gateway_key, "") in securities), None)
        found = [s for s in (rule_level, securities.get(("HTTPRoute", route.key, "")),
                             gateway_level) if s is not None]
        if not found:
            return None
        chosen = found[0]
        dropped = next((s for s in found[1:] if _authenticates(s)), None)
        where = f"rule {rule_name} of " if chosen is rule_level else ""
        if dropped is not None and not _authenticates(chosen) \
                and (chosen.key, route.key, where) not in self._warned:
            self._warned.add((chosen.key, route.key, where))
            loaded = next(r for r in self.of("SecurityPolicy")
                          if (r.resource.namespace, r.resource.name) == chosen.key)
            self.report.warning(loaded, f"on {where}HTTPRoute {route.key} this policy replaces "
                                        f"SecurityPolicy {dropped.namespace}/{dropped.name} whole "
                                        "(the most specific wins) and has no apiKeyAuth or jwt: "
                                        "requests there are not authenticated")
        return chosen

    def envoy_headers(self, gateways: Mapping[str, GatewayListeners]) -> bool:
        """Whether a ClientTrafficPolicy on a Gateway turns on `x-envoy-*` headers."""
        enabled = False
        for loaded in self.of("ClientTrafficPolicy"):
            res = loaded.resource
            assert isinstance(res, envoy.ClientTrafficPolicy)
            targets = self._targets(loaded, res.spec, gateways, {})
            if res.spec.headers and res.spec.headers.enable_envoy_headers and any(
                kind == "Gateway" for kind, _, _ in targets
            ):
                enabled = True
        return enabled


def _authenticates(spec: SecuritySpec) -> bool:
    return spec.api_key is not None or spec.jwt is not None


def _add_traffic_policy_checks(checks: dict[str, ActiveHealthCheckSpec],
                               placed: Sequence[PlacedRoute]) -> None:
    """Pools without a HealthCheckPolicy get the `healthCheck.active` of a BackendTrafficPolicy
    on a route rule that sends to them (the first such rule in route order)."""
    for p in placed:
        for rule in p.route.rules:
            policy = rule.policy
            hc = policy.health_check if policy is not None else None
            if hc is None or hc.active is None or hc.active.path is None:
                continue
            source = f"BackendTrafficPolicy {policy.namespace}/{policy.name}" if policy else ""
            for backend in rule.backends:
                if backend.pool is not None and backend.pool.key not in checks:
                    checks[backend.pool.key] = replace(hc.active, source=source)

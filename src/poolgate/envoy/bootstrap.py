"""The whole bootstrap: admin, one listener per Gateway listener port, the clusters, and the
untranslated list as a comment block on top."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import yaml

from poolgate.api.problems import Problem
from poolgate.config.policy import TrafficPolicy
from poolgate.config.snapshot import Backend, RouteRule, Snapshot
from poolgate.core.epp_protocol import EXT_PROC_FILTER
from poolgate.envoy.clusters import backend_cluster, epp_cluster, invalid_cluster
from poolgate.envoy.filters import (
    ENABLE,
    connection_manager,
    ext_proc_filter,
    ext_proc_per_route,
    rate_limit_filter,
    rate_limit_filter_name,
    router_filter,
)
from poolgate.envoy.model import Config, EnvoyOptions, Notes, Untranslated, socket_address, typed
from poolgate.envoy.routes import PerRoute, virtual_hosts
from poolgate.envoy.untranslated import collect

# Envoy Gateway's cap on downstream connections (without one Envoy warns at start).
MAX_DOWNSTREAM_CONNECTIONS = 50000


@dataclass(frozen=True, slots=True)
class Rendered:
    """A bootstrap and what it leaves out."""

    config: Config
    untranslated: tuple[Untranslated, ...]

    def yaml(self) -> str:
        """The bootstrap as YAML, the untranslated list as a comment block on top."""
        lines = ["# Envoy bootstrap rendered by `poolgate envoy-config` (docs/envoy-config.md)."]
        if self.untranslated:
            lines.append("# Not translated:")
            lines += [f"#   - {entry}" for entry in self.untranslated]
        else:
            lines.append("# Everything in the manifests is translated.")
        body = yaml.safe_dump(self.config, sort_keys=False, default_flow_style=False, width=100,
                              allow_unicode=True)
        return "\n".join(lines) + "\n" + body


def _rules(snapshot: Snapshot) -> Iterable[RouteRule]:
    return (rule for route in snapshot.routes for rule in route.rules)


def _rate_limited(snapshot: Snapshot, notes: Notes) -> dict[tuple[str, str], Config]:
    """The rate-limit filter of each policy with rules, by (namespace, name)."""
    out: dict[tuple[str, str], Config] = {}
    ports: dict[tuple[str, str], set[int]] = {}
    for route in snapshot.routes:
        for rule in route.rules:
            policy = rule.policy
            if policy is None or not policy.rate_limits:
                continue
            key = (policy.namespace, policy.name)
            ports.setdefault(key, set()).update(route.ports)
            if key not in out and (found := rate_limit_filter(policy, notes)) is not None:
                out[key] = found
    for key, used in ports.items():
        if len(used) > 1 and key in out:
            notes.add(f"BackendTrafficPolicy {key[0]}/{key[1]}", "spec.rateLimit",
                      f"its routes are on {len(used)} listener ports; each Envoy listener "
                      "keeps its own buckets (poolgate: one set per policy)")
    return out


class _PerRoute:
    """The per-route parts of the filters, for `routes.PerRoute`."""

    def __init__(self, snapshot: Snapshot, limited: dict[tuple[str, str], Config]) -> None:
        self.snapshot = snapshot
        self.limited = limited

    def for_backend(self, backend: Backend) -> Config:
        return {EXT_PROC_FILTER: ext_proc_per_route(backend)} if backend.pool is not None else {}

    def for_rule(self, rule: RouteRule) -> Config:
        policy: TrafficPolicy | None = rule.policy
        if policy is None or (policy.namespace, policy.name) not in self.limited:
            return {}
        return {rate_limit_filter_name(policy): ENABLE}

    def timeout(self, rule: RouteRule) -> float | None:
        """HTTPRoute `timeouts.request`, else the policy's; a GCPBackendPolicy `timeoutSec` on
        the rule's only pool bounds it too (the shorter wins, as in poolgate)."""
        total = rule.effective_request_timeout
        pools = {b.pool.key for b in rule.backends if b.pool is not None and b.weight > 0}
        if len(pools) == 1:
            spec = self.snapshot.backend_policies.get(next(iter(pools)))
            if spec is not None and spec.timeout is not None:
                total = spec.timeout if total is None else min(total, spec.timeout)
        return total

    def refusal(self, rule: RouteRule) -> Config | None:
        """403 for a rule that needs authentication: nothing in Envoy checks its credential."""
        spec = rule.security
        if spec is None or (spec.api_key is None and spec.jwt is None):
            return None
        return {"status": 403, "body": {"inline_string": (
            f"This route needs SecurityPolicy {spec.namespace}/{spec.name}, which poolgate "
            "envoy-config does not translate.")}}


def _listeners(snapshot: Snapshot, options: EnvoyOptions, filters: list[Config],
               per_route: PerRoute, notes: Notes) -> list[Config]:
    listeners = []
    for port in snapshot.listener_ports():
        table = snapshot.tables.get(port)
        hosts = virtual_hosts(port, table, per_route, notes) if table is not None else []
        route_config = {"name": f"http-{port}", "virtual_hosts": hosts}
        listeners.append({
            "name": f"http-{port}",
            "address": socket_address(options.listen_host, options.bound_port(port)),
            "filter_chains": [{"filters": [connection_manager(port, route_config, filters)]}],
        })
    return listeners


def render(snapshot: Snapshot, options: EnvoyOptions,
           warnings: Iterable[Problem] = ()) -> Rendered:
    """The Envoy bootstrap for a snapshot (`warnings`: the loader's, listed as ignored)."""
    notes = Notes()
    collect(snapshot, warnings, notes)
    limited = _rate_limited(snapshot, notes)
    backends: dict[str, tuple[Backend, TrafficPolicy | None]] = {}
    invalid = False
    for rule in _rules(snapshot):
        for backend in rule.backends:
            if backend.error is None:
                backends.setdefault(backend.key, (backend, rule.policy))
            elif backend.weight > 0 and any(b.error is None and b.weight > 0
                                            for b in rule.backends):
                invalid = True
    pooled = any(b.pool is not None for b, _ in backends.values())
    filters = list(limited.values())
    if pooled:
        filters.append(ext_proc_filter(options.response_body_mode))
    filters.append(router_filter(snapshot.envoy_headers))
    per = _PerRoute(snapshot, limited)
    listeners = _listeners(snapshot, options, filters,
                           PerRoute(per.for_backend, per.for_rule, per.timeout, per.refusal),
                           notes)
    clusters = [backend_cluster(snapshot, b, policy, options, notes)
                for b, policy in backends.values()]
    if invalid:
        clusters.append(invalid_cluster())
    if pooled:
        clusters.append(epp_cluster(options))
    config: Config = {
        "admin": {"address": socket_address(options.admin_host, options.admin_port)},
        "overload_manager": {"resource_monitors": [{
            "name": "envoy.resource_monitors.global_downstream_max_connections",
            "typed_config": typed(
                "envoy.extensions.resource_monitors.downstream_connections.v3."
                "DownstreamConnectionsConfig",
                max_active_downstream_connections=MAX_DOWNSTREAM_CONNECTIONS),
        }]},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
    return Rendered(config, tuple(notes.entries))

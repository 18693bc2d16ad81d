"""Which of the objects read from the API are this gateway's business.

A cluster holds Gateways of many classes. poolgate serves a Gateway only when its
`gatewayClassName` names a GatewayClass whose `spec.controllerName` is one of poolgate's
controller names; what hangs off foreign Gateways only is left out before the build, so that it
is neither served nor warned about (nor scraped, for pools): HTTPRoutes whose every Gateway
parentRef is foreign, InferencePools no kept route sends to, the InferenceModels/Objectives and
GKE policies of those pools, and Envoy Gateway policies that target only what was left out.

Plain functions over the raw objects (dicts, as the API returns them): a malformed field keeps
its object, for the build's validation to report.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GATEWAY_GROUP = "gateway.networking.k8s.io"
_POOL_GROUPS = frozenset({"inference.networking.k8s.io", "inference.networking.x-k8s.io"})
# backendRef / targetRef (group, kind) that stand for the InferencePool of the same name: the pool
# itself, and the imports of an exported pool (multi-cluster, seed 002).
_POOL_REFS = frozenset({*((g, "InferencePool") for g in _POOL_GROUPS),
                        ("inference.networking.x-k8s.io", "InferencePoolImport"),
                        ("networking.gke.io", "GCPInferencePoolImport")})
_POOL_FOLLOWERS = frozenset({"InferenceModel", "InferenceObjective", "GCPBackendPolicy",
                             "HealthCheckPolicy"})
_ENVOY_POLICIES = frozenset({"BackendTrafficPolicy", "ClientTrafficPolicy", "SecurityPolicy"})


@dataclass(frozen=True, slots=True)
class Scope:
    """The objects to build from, and what the choice was based on."""

    objects: tuple[Mapping[str, Any], ...]
    classes: frozenset[str]  # GatewayClass names poolgate implements
    gateways: frozenset[str]  # namespace/name of the Gateways served
    foreign_gateways: frozenset[str]  # Gateways of other classes (or of no known class)
    left_out: tuple[Mapping[str, Any], ...] = field(default=())


def _meta(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    meta = obj.get("metadata")
    return meta if isinstance(meta, Mapping) else {}


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def namespace_of(obj: Mapping[str, Any]) -> str:
    """The object's namespace (`default` when unset, as the loader places it)."""
    return str(_meta(obj).get("namespace") or "default")


def key_of(obj: Mapping[str, Any]) -> str:
    """namespace/name."""
    return f"{namespace_of(obj)}/{_meta(obj).get('name', '')}"


def _refs(value: Any) -> list[Mapping[str, Any]]:
    return [r for r in value if isinstance(r, Mapping)] if isinstance(value, list) else []


def route_gateways(route: Mapping[str, Any]) -> list[str]:
    """namespace/name of each Gateway parentRef of an HTTPRoute."""
    out = []
    for ref in _refs(_spec(route).get("parentRefs")):
        if ref.get("group", GATEWAY_GROUP) == GATEWAY_GROUP and ref.get("kind", "Gateway") == "Gateway":
            out.append(f"{ref.get('namespace') or namespace_of(route)}/{ref.get('name', '')}")
    return out


def route_pools(route: Mapping[str, Any]) -> set[str]:
    """namespace/name of each InferencePool an HTTPRoute's rules send to."""
    out = set()
    rules = _spec(route).get("rules")
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, Mapping):
            continue
        for ref in _refs(rule.get("backendRefs")):
            if (ref.get("group"), ref.get("kind")) in _POOL_REFS:
                out.add(f"{ref.get('namespace') or namespace_of(route)}/{ref.get('name', '')}")
    return out


def _pool_of(obj: Mapping[str, Any]) -> str | None:
    """The InferencePool an InferenceModel/Objective (poolRef) or a GKE policy (targetRef, to
    the pool or its import) belongs to, None when it names none (or something else)."""
    spec = _spec(obj)
    ref = spec.get("poolRef") if obj.get("kind") in ("InferenceModel", "InferenceObjective") \
        else spec.get("targetRef")
    if not isinstance(ref, Mapping) or ref.get("kind", "InferencePool") not in {
            kind for _, kind in _POOL_REFS}:
        return None
    return f"{namespace_of(obj)}/{ref.get('name', '')}"


def _policy_targets(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(kind, namespace/name) of each target of an Envoy Gateway policy."""
    spec = _spec(obj)
    refs = _refs(spec.get("targetRefs"))
    if isinstance(spec.get("targetRef"), Mapping):
        refs.append(spec["targetRef"])
    return [(str(r.get("kind", "")), f"{namespace_of(obj)}/{r.get('name', '')}") for r in refs]


def scope(objects: Iterable[Mapping[str, Any]], controller_names: Sequence[str]) -> Scope:
    """The objects poolgate builds from, given the controller names it answers to."""
    objects = list(objects)
    by_kind: dict[str, list[Mapping[str, Any]]] = {}
    for obj in objects:
        by_kind.setdefault(str(obj.get("kind", "")), []).append(obj)
    classes = frozenset(
        str(_meta(c).get("name", "")) for c in by_kind.get("GatewayClass", [])
        if _spec(c).get("controllerName") in controller_names)
    gateways = frozenset(key_of(g) for g in by_kind.get("Gateway", [])
                         if _spec(g).get("gatewayClassName") in classes)
    foreign = frozenset(key_of(g) for g in by_kind.get("Gateway", [])) - gateways
    routes = {key_of(r) for r in by_kind.get("HTTPRoute", [])
              if not route_gateways(r) or any(g not in foreign for g in route_gateways(r))}
    pools = set().union(*(route_pools(r) for r in by_kind.get("HTTPRoute", [])
                          if key_of(r) in routes))
    # Pools that exist but only foreign routes use: theirs. A reference to a pool that does not
    # exist at all stays in, for the build to warn about.
    theirs = {key_of(p) for p in by_kind.get("InferencePool", [])} - pools
    kept: list[Mapping[str, Any]] = []
    left_out: list[Mapping[str, Any]] = []
    for obj in objects:
        (kept if _wanted(obj, foreign, routes, theirs) else left_out).append(obj)
    return Scope(tuple(kept), classes, gateways, foreign, tuple(left_out))


def _wanted(obj: Mapping[str, Any], foreign: frozenset[str], routes: set[str],
            theirs: set[str]) -> bool:
    kind = obj.get("kind")
    if kind == "Gateway":
        return key_of(obj) not in foreign
    if kind == "HTTPRoute":
        return key_of(obj) in routes
    if kind == "InferencePool":
        return key_of(obj) not in theirs
    if kind in _POOL_FOLLOWERS:
        return _pool_of(obj) not in theirs
    if kind in _ENVOY_POLICIES:
        targets = _policy_targets(obj)
        return not targets or any(
            (k == "Gateway" and key not in foreign) or (k == "HTTPRoute" and key in routes)
            or k not in ("Gateway", "HTTPRoute") for k, key in targets)
    return True

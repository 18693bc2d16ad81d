"""Multi-cluster pools: per-cluster InferencePool declarations merged, exports, and imports.

In GKE each cluster runs its own InferencePool, annotated `networking.gke.io/export: "True"`,
and the config cluster's HTTPRoute names a `GCPInferencePoolImport` of the same name, which
stands for the union of every exported pool. Outside a cluster the same thing is written as:

- one InferencePool whose `LocalEndpoints` carry `cluster` / `region` per address, or
- the same InferencePool manifest once per cluster, each copy annotated
  `poolgate.dev/cluster: NAME` (and optionally `poolgate.dev/region: REGION`); each copy then
  selects only the addresses of its own cluster (and those declared without a cluster, which it
  tags with its cluster and region).

The snapshot keeps one `Pool` per namespace/name (the union of its declarations) and, for the
import, the union of the exported declarations only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from poolgate.api import gateway, inference
from poolgate.api.gke import GKE_NETWORKING_GROUP
from poolgate.config.backends import reference_granted
from poolgate.config.outcomes import BACKEND_NOT_FOUND
from poolgate.config.snapshot import Backend, RouteRule
from poolgate.core.pools import Endpoint, Pool

CLUSTER_ANNOTATION = "poolgate.dev/cluster"
REGION_ANNOTATION = "poolgate.dev/region"
EXPORT_ANNOTATIONS = ("networking.gke.io/export", "inference.networking.x-k8s.io/export")
IMPORT_KINDS = frozenset({
    (GKE_NETWORKING_GROUP, "GCPInferencePoolImport"),
    (inference.GROUP_X, "InferencePoolImport"),
    (inference.GROUP_V1, "InferencePoolImport"),
})


def is_exported(annotations: Mapping[str, str]) -> bool:
    """Whether a pool's annotations export it for multi-cluster import."""
    return any(annotations.get(name, "").strip().lower() == "true" for name in EXPORT_ANNOTATIONS)


def is_import_ref(group: str, kind: str) -> bool:
    """Whether a backendRef (group, kind) names a multi-cluster pool import."""
    return (group, kind) in IMPORT_KINDS


def place_endpoints(endpoints: Sequence[Endpoint], cluster: str | None,
                    region: str | None) -> tuple[Endpoint, ...]:
    """The endpoints one declaration of a pool owns, tagged with its cluster and region.

    Without a cluster every endpoint is kept as declared. With one, endpoints declared in
    another cluster belong to that cluster's copy of the pool and are left out.
    """
    if cluster is None:
        if region is None:
            return tuple(endpoints)
        return tuple(ep if ep.region is not None else replace(ep, region=region)
                     for ep in endpoints)
    out = []
    for ep in endpoints:
        if ep.cluster is not None and ep.cluster != cluster:
            continue
        out.append(replace(ep, cluster=cluster, region=ep.region or region))
    return tuple(out)


def merge_declarations(declarations: Sequence[Pool]) -> Pool:
    """One pool from its per-cluster declarations: endpoints unioned (first address wins), the
    first declaration's settings, annotations merged (first wins), exported if any is."""
    first = declarations[0]
    if len(declarations) == 1:
        return first
    seen: dict[str, Endpoint] = {}
    annotations: dict[str, str] = {}
    for pool in declarations:
        for ep in pool.endpoints:
            seen.setdefault(ep.address, ep)
        for key, value in pool.annotations.items():
            annotations.setdefault(key, value)
    return replace(first, endpoints=tuple(seen.values()), addresses=(),
                   annotations=annotations, exported=any(p.exported for p in declarations))


def import_of(declarations: Sequence[Pool]) -> Pool | None:
    """What an import of this pool resolves to: the union of its exported declarations."""
    exported = [p for p in declarations if p.exported]
    if not exported:
        return None
    if len(exported) == len(declarations):
        return merge_declarations(declarations)
    return merge_declarations(exported)


def resolve_import(ref: gateway.HTTPBackendRef, key: str, route_namespace: str,
                   imports: Mapping[str, Pool], pools: Mapping[str, Pool],
                   grants: Sequence[gateway.ReferenceGrant]) -> Backend:
    """The Backend for a `GCPInferencePoolImport` / `InferencePoolImport` backendRef."""
    namespace = ref.namespace or route_namespace
    described = f"{ref.kind} {namespace}/{ref.name}"

    def failed(message: str) -> Backend:
        return Backend(ref.kind, ref.name, namespace, ref.weight, key, error=message,
                       error_reason=BACKEND_NOT_FOUND)

    if namespace != route_namespace and not reference_granted(
        grants, route_namespace, namespace, ref.group, ref.kind, ref.name
    ):
        return failed(f"backendRef to {described} crosses namespaces and no ReferenceGrant "
                      f"in {namespace} allows it")
    pool_key = f"{namespace}/{ref.name}"
    found = imports.get(pool_key)
    if found is not None:
        return Backend(ref.kind, ref.name, namespace, ref.weight, key, pool=found)
    if pool_key in pools:
        return failed(f"backendRef to {described}: InferencePool {pool_key} is not exported; "
                      f"annotate it {EXPORT_ANNOTATIONS[0]}: \"True\" in each cluster")
    return failed(f"backendRef to {described}: no InferencePool {pool_key} is declared in any "
                  f"cluster (declare it with the annotation {EXPORT_ANNOTATIONS[0]}: \"True\")")


def with_imports(rule_spec: gateway.HTTPRouteRule, compiled: RouteRule, route_namespace: str,
                 imports: Mapping[str, Pool], pools: Mapping[str, Pool],
                 grants: Sequence[gateway.ReferenceGrant]) -> tuple[RouteRule, list[int]]:
    """`compiled` with its import backendRefs resolved, and the indexes of those backendRefs.

    The generic backendRef resolution does not know import kinds, so their Backends arrive here
    as errors and are replaced; a rule whose filters already failed keeps its errors.
    """
    replaced: list[int] = []
    backends = list(compiled.backends)
    for j, ref in enumerate(rule_spec.backend_refs):
        if j >= len(backends) or not is_import_ref(ref.group, ref.kind):
            continue
        current = backends[j]
        if current.error is not None and not current.error.startswith("backendRef kind "):
            continue  # an unsupported filter on the rule: the rule answers 500 either way
        backends[j] = resolve_import(ref, current.key, route_namespace, imports, pools, grants)
        replaced.append(j)
    if not replaced:
        return compiled, replaced
    return replace(compiled, backends=tuple(backends)), replaced

"""backendRefs resolved into Backends: an InferencePool, a local address, or an error (500)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from poolgate.api import gateway, inference
from poolgate.api.kinds import GATEWAY_GROUP
from poolgate.api.local import GROUP as POOLGATE_GROUP
from poolgate.api.local import parse_address
from poolgate.config.outcomes import BACKEND_NOT_FOUND, INVALID_KIND, REF_NOT_PERMITTED
from poolgate.config.snapshot import Backend
from poolgate.core.pools import Pool
from poolgate.discovery.local import SERVICE_LABEL, LocalEndpointSource

INFERENCE_POOL_GROUPS = frozenset({inference.GROUP_X, inference.GROUP_V1})
ADDRESS_KIND = "Address"


def reference_granted(
    grants: Sequence[gateway.ReferenceGrant], from_namespace: str, to_namespace: str,
    to_group: str, to_kind: str, to_name: str, *, from_group: str = GATEWAY_GROUP,
    from_kind: str = "HTTPRoute",
) -> bool:
    """Whether a ReferenceGrant in `to_namespace` lets `from_kind`s (HTTPRoutes by default) in
    `from_namespace` refer here."""
    for grant in grants:
        if grant.namespace != to_namespace:
            continue
        if not any(f.group == from_group and f.kind == from_kind
                   and f.namespace == from_namespace for f in grant.spec.from_):
            continue
        if any(t.group == to_group and t.kind == to_kind and t.name in (None, to_name)
               for t in grant.spec.to):
            return True
    return False


def resolve_backend(
    ref: gateway.HTTPBackendRef,
    key: str,
    route_namespace: str,
    pools: Mapping[str, Pool],
    source: LocalEndpointSource,
    grants: Sequence[gateway.ReferenceGrant],
    *, in_cluster: bool = False,
) -> Backend:
    """The Backend for one backendRef; unresolvable refs carry `error` (the data plane's 500).
    `in_cluster`: a Service no LocalEndpoints declares is its cluster DNS name
    (`NAME.NAMESPACE.svc`, kube-proxy balancing its pods) on the backendRef's port."""
    namespace = ref.namespace or route_namespace

    def failed(message: str, reason: str = BACKEND_NOT_FOUND) -> Backend:
        return Backend(ref.kind, ref.name, namespace, ref.weight, key, error=message,
                       error_reason=reason)

    described = f"{ref.kind} {namespace}/{ref.name}"
    if namespace != route_namespace and not reference_granted(
        grants, route_namespace, namespace, ref.group, ref.kind, ref.name
    ):
        return failed(f"backendRef to {described} crosses namespaces and no ReferenceGrant "
                      f"in {namespace} allows it", REF_NOT_PERMITTED)
    if ref.kind == "InferencePool" and ref.group in INFERENCE_POOL_GROUPS:
        pool = pools.get(f"{namespace}/{ref.name}")
        if pool is None:
            return failed(f"backendRef to InferencePool {namespace}/{ref.name}: no such pool")
        return Backend(ref.kind, ref.name, namespace, ref.weight, key, pool=pool)
    if ref.kind == ADDRESS_KIND and ref.group == POOLGATE_GROUP:
        try:
            host, port = parse_address(ref.name)
        except ValueError as e:
            return failed(f"backendRef {described}: {e}")
        if port is not None:
            return failed(f"backendRef {described}: put the port in backendRef.port, "
                          "not in the name")
        if ref.port is None:
            return failed(f"backendRef {described} needs a port")
        return Backend(ref.kind, ref.name, namespace, ref.weight, key, host=host, port=ref.port)
    if ref.kind == "Service" and ref.group in ("", "core"):
        return _service_backend(ref, key, namespace, source, in_cluster, failed)
    group = ref.group or "core"
    return failed(f"backendRef kind {ref.kind} in group {group} is not supported (use an "
                  f"InferencePool, a Service, or group {POOLGATE_GROUP} kind {ADDRESS_KIND})",
                  INVALID_KIND)


def _service_backend(ref: gateway.HTTPBackendRef, key: str, namespace: str,
                     source: LocalEndpointSource, in_cluster: bool,
                     failed: Callable[[str], Backend]) -> Backend:
    """A Service backendRef: the one address a LocalEndpoints declares for it, else (in a
    cluster) its DNS name on the backendRef's port."""
    found = source.service_addresses(namespace, ref.name)
    if not found and in_cluster:
        if ref.port is None:
            return failed(f"backendRef to Service {namespace}/{ref.name} needs a port")
        return Backend(ref.kind, ref.name, namespace, ref.weight, key,
                       host=f"{ref.name}.{namespace}.svc", port=ref.port)
    if len(found) != 1:
        how = "none" if not found else f"{len(found)} addresses"
        return failed(
            f"backendRef to Service {namespace}/{ref.name}: outside a cluster a Service is "
            f"one address declared by a LocalEndpoints labelled {SERVICE_LABEL}: "
            f"{ref.name} in namespace {namespace}; found {how}"
        )
    addr = found[0]
    port = addr.port if addr.port is not None else ref.port
    if port is None:
        return failed(f"backendRef to Service {namespace}/{ref.name} needs a port "
                      "(in the backendRef or the declared address)")
    return Backend(ref.kind, ref.name, namespace, ref.weight, key, host=addr.host, port=port)

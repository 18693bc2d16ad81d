"""Which (group, kind, version) poolgate reads, which kinds it knowingly skips, and which kind a
misspelt one probably meant."""

from __future__ import annotations

from poolgate.api import core, envoy, gateway, gke, inference, local, security
from poolgate.api._base import Resource
from poolgate.api.fields import closest

GATEWAY_GROUP = "gateway.networking.k8s.io"
ENVOY_GROUP = "gateway.envoyproxy.io"

# (group, kind) -> {version: schema}
SCHEMAS: dict[tuple[str, str], dict[str, type[Resource]]] = {
    (GATEWAY_GROUP, "GatewayClass"): {"v1": gateway.GatewayClass, "v1beta1": gateway.GatewayClass},
    (GATEWAY_GROUP, "Gateway"): {"v1": gateway.Gateway, "v1beta1": gateway.Gateway},
    (GATEWAY_GROUP, "HTTPRoute"): {"v1": gateway.HTTPRoute, "v1beta1": gateway.HTTPRoute},
    (GATEWAY_GROUP, "ReferenceGrant"): {
        "v1": gateway.ReferenceGrant, "v1beta1": gateway.ReferenceGrant,
        "v1alpha2": gateway.ReferenceGrant,
    },
    (inference.GROUP_X, "InferencePool"): {"v1alpha2": inference.InferencePoolV1Alpha2},
    (inference.GROUP_V1, "InferencePool"): {"v1": inference.InferencePoolV1},
    (inference.GROUP_X, "InferenceModel"): {"v1alpha2": inference.InferenceModel},
    (inference.GROUP_X, "InferenceObjective"): {"v1alpha2": inference.InferenceObjective},
    (ENVOY_GROUP, "BackendTrafficPolicy"): {"v1alpha1": envoy.BackendTrafficPolicy},
    (ENVOY_GROUP, "ClientTrafficPolicy"): {"v1alpha1": envoy.ClientTrafficPolicy},
    (ENVOY_GROUP, "EnvoyProxy"): {"v1alpha1": envoy.EnvoyProxy},
    (ENVOY_GROUP, "SecurityPolicy"): {"v1alpha1": security.SecurityPolicy},
    (local.GROUP, "LocalEndpoints"): {"v1alpha1": local.LocalEndpoints},
    (gke.GKE_NETWORKING_GROUP, "GCPBackendPolicy"): {"v1": gke.GCPBackendPolicy},
    (gke.GKE_NETWORKING_GROUP, "HealthCheckPolicy"): {"v1": gke.HealthCheckPolicy},
    (gke.GKE_AUTOSCALING_GROUP, "AutoscalingMetric"): {"v1beta1": gke.AutoscalingMetric},
}

# Core kinds read only when a resource references them (a SecurityPolicy's Secret or ConfigMap):
# the loader holds their documents aside, unvalidated, and they count as skipped unless used.
HELD_SCHEMAS: dict[tuple[str, str], dict[str, type[Resource]]] = {
    ("", "Secret"): {"v1": core.Secret},
    ("", "ConfigMap"): {"v1": core.ConfigMap},
}

# Groups whose other kinds change traffic in a real cluster: skipping one earns a warning,
# since the user probably expects it to take effect.
WARN_WHEN_SKIPPED_GROUPS = frozenset(
    {GATEWAY_GROUP, ENVOY_GROUP, inference.GROUP_X, inference.GROUP_V1}
)

# Our own group: an unknown kind there is a typo, not a foreign resource.
OWN_GROUP = local.GROUP

# The other kinds of the groups poolgate reads (from their CRDs): real kinds, not typos, even when
# close to one poolgate reads (TCPRoute and HTTPRoute, InferencePoolImport and InferencePool).
OTHER_KINDS: dict[str, frozenset[str]] = {
    GATEWAY_GROUP: frozenset({
        "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute", "BackendTLSPolicy", "ListenerSet",
    }),
    ENVOY_GROUP: frozenset({
        "Backend", "EnvoyExtensionPolicy", "EnvoyPatchPolicy", "HTTPRouteFilter",
    }),
    inference.GROUP_X: frozenset({
        "InferencePoolImport", "InferenceModelRewrite", "EndpointPickerConfig",
    }),
    inference.GROUP_V1: frozenset(),
    gke.GKE_NETWORKING_GROUP: frozenset({
        "GCPAuthzPolicy", "GCPClientTLSPolicy", "GCPGatewayPolicy", "GCPRoutingExtension",
        "GCPServerTLSPolicy", "GCPSessionAffinityFilter", "GCPSessionAffinityPolicy",
        "GCPTrafficDistributionPolicy", "GCPTrafficExtension", "GCPInferencePoolImport",
        "FrontendConfig", "ManagedCertificate", "ServiceNetworkEndpointGroup",
        "ServiceAttachment", "GKENetworkParamSet", "Network",
    }),
    gke.GKE_AUTOSCALING_GROUP: frozenset(),
    # The operator's resource (deploy/crds): real, but the gateway does not read it.
    OWN_GROUP: frozenset({"InferenceService"}),
}

# How close a written kind must be to a known one to be suggested (difflib's ratio, 0..1).
KIND_CUTOFF = 0.8


def split_api_version(api_version: str) -> tuple[str, str]:
    """`group/version` as (group, version); the core group (`v1`) is the empty string."""
    group, _, version = api_version.rpartition("/")
    return group, version


def schema_for(api_version: str, kind: str) -> type[Resource] | str | None:
    """The schema for a document, None when poolgate skips the kind, or an error message."""
    group, version = split_api_version(api_version)
    versions = SCHEMAS.get((group, kind))
    if versions is None:
        if group == OWN_GROUP and kind not in OTHER_KINDS[OWN_GROUP]:
            known = sorted(k for g, k in SCHEMAS if g == OWN_GROUP)
            return (f"unknown kind {kind!r} in {OWN_GROUP}"
                    + (_did_you_mean(group, kind) or f" (known: {', '.join(known)})"))
        return None
    schema = versions.get(version)
    if schema is None:
        return (
            f"unsupported apiVersion {api_version!r} for {kind} "
            f"(supported: {', '.join(f'{group}/{v}' for v in versions)})"
        )
    return schema


def kind_hint(api_version: str, kind: str) -> str | None:
    """For a kind poolgate skips: a warning when it is probably a misspelling of a kind poolgate
    reads (`InferencePol`, `HTTPRoutes`) or a kind poolgate reads written under another of its
    groups; None for a real kind or a foreign group."""
    group, _ = split_api_version(api_version)
    if group not in OTHER_KINDS or kind in OTHER_KINDS[group]:
        return None
    suggestion = _did_you_mean(group, kind)
    if suggestion:
        return f"unknown kind {kind!r} in {group}{suggestion}; it is ignored"
    elsewhere = sorted(g for g, k in SCHEMAS if k == kind and g != group)
    if elsewhere:
        api_versions = [f"{g}/{v}" for g in elsewhere for v in SCHEMAS[(g, kind)]]
        return (f"{kind} is not a kind of {group} (did you mean apiVersion "
                f"{' or '.join(api_versions)}?); it is ignored")
    return None


def _did_you_mean(group: str, kind: str) -> str:
    known = {k for g, k in SCHEMAS if g == group} | OTHER_KINDS.get(group, frozenset())
    suggestion = closest(kind, known, KIND_CUTOFF)
    return f" (did you mean {suggestion}?)" if suggestion else ""

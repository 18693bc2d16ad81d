"""The resource types `poolgate serve --source kubernetes` lists and watches, and whose status
it writes: one table, read by the controller, the chart's RBAC test and the docs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ResourceType:
    """One API resource: where it lives on the API server and what its objects are called."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """`group/version`, or the bare version for the core group."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def collection(self, namespace: str | None = None) -> str:
        """The REST path of the collection, in one namespace or (None) across all of them."""
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            return f"{prefix}/namespaces/{namespace}/{self.plural}"
        return f"{prefix}/{self.plural}"

    def object_path(self, namespace: str | None, name: str) -> str:
        """The REST path of one object."""
        return f"{self.collection(namespace if self.namespaced else None)}/{name}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.group or 'core'}/{self.version}"


GATEWAY = "gateway.networking.k8s.io"
INFERENCE_V1 = "inference.networking.k8s.io"
INFERENCE_X = "inference.networking.x-k8s.io"
ENVOY = "gateway.envoyproxy.io"
GKE_NETWORKING = "networking.gke.io"
GKE_AUTOSCALING = "autoscaling.gke.io"

GATEWAY_CLASSES = ResourceType(GATEWAY, "v1", "gatewayclasses", "GatewayClass", namespaced=False)
GATEWAYS = ResourceType(GATEWAY, "v1", "gateways", "Gateway")
HTTP_ROUTES = ResourceType(GATEWAY, "v1", "httproutes", "HTTPRoute")
REFERENCE_GRANTS = ResourceType(GATEWAY, "v1beta1", "referencegrants", "ReferenceGrant")
INFERENCE_POOLS = ResourceType(INFERENCE_V1, "v1", "inferencepools", "InferencePool")
INFERENCE_POOLS_X = ResourceType(INFERENCE_X, "v1alpha2", "inferencepools", "InferencePool")
INFERENCE_MODELS = ResourceType(INFERENCE_X, "v1alpha2", "inferencemodels", "InferenceModel")
INFERENCE_OBJECTIVES = ResourceType(INFERENCE_X, "v1alpha2", "inferenceobjectives",
                                    "InferenceObjective")
BACKEND_TRAFFIC_POLICIES = ResourceType(ENVOY, "v1alpha1", "backendtrafficpolicies",
                                        "BackendTrafficPolicy")
CLIENT_TRAFFIC_POLICIES = ResourceType(ENVOY, "v1alpha1", "clienttrafficpolicies",
                                       "ClientTrafficPolicy")
SECURITY_POLICIES = ResourceType(ENVOY, "v1alpha1", "securitypolicies", "SecurityPolicy")
ENVOY_PROXIES = ResourceType(ENVOY, "v1alpha1", "envoyproxies", "EnvoyProxy")
GCP_BACKEND_POLICIES = ResourceType(GKE_NETWORKING, "v1", "gcpbackendpolicies",
                                    "GCPBackendPolicy")
HEALTH_CHECK_POLICIES = ResourceType(GKE_NETWORKING, "v1", "healthcheckpolicies",
                                     "HealthCheckPolicy")
AUTOSCALING_METRICS = ResourceType(GKE_AUTOSCALING, "v1beta1", "autoscalingmetrics",
                                   "AutoscalingMetric")
SECRETS = ResourceType("", "v1", "secrets", "Secret")
CONFIG_MAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
PODS = ResourceType("", "v1", "pods", "Pod")
SERVICES = ResourceType("", "v1", "services", "Service")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")

# Every kind the gateway's manifests are built from, listed and watched (Pods are watched by
# pod discovery, per pool namespace; Services only for `--publish-service`, read by name).
WATCHED: tuple[ResourceType, ...] = (
    GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, REFERENCE_GRANTS,
    INFERENCE_POOLS, INFERENCE_POOLS_X, INFERENCE_MODELS, INFERENCE_OBJECTIVES,
    BACKEND_TRAFFIC_POLICIES, CLIENT_TRAFFIC_POLICIES, SECURITY_POLICIES, ENVOY_PROXIES,
    GCP_BACKEND_POLICIES, HEALTH_CHECK_POLICIES, AUTOSCALING_METRICS,
    SECRETS, CONFIG_MAPS,
)

# The kinds whose `status` subresource the elected gateway replica writes.
STATUS_WRITTEN: tuple[ResourceType, ...] = (
    GATEWAY_CLASSES, GATEWAYS, HTTP_ROUTES, INFERENCE_POOLS, INFERENCE_POOLS_X,
)

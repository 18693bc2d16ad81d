"""Rendering an InferenceService into its router Deployment and Service: a pure function."""

from __future__ import annotations

from typing import Any

from poolgate.operator.spec import API_VERSION, KIND, InferenceServiceSpec, parse_spec

FIELD_MANAGER = "poolgate-operator"
ROUTER_APP = "poolgate-router"
DEFAULT_RESOURCES: dict[str, dict[str, str | int]] = {
    "requests": {"cpu": "100m", "memory": "128Mi"},
    "limits": {"memory": "256Mi"},
}


def router_name(isvc_name: str) -> str:
    """Name of the Deployment and Service rendered for an InferenceService."""
    return f"{isvc_name}-router"


def selector_labels(isvc_name: str) -> dict[str, str]:
    """The labels the Service selects router pods by (immutable once the Deployment exists)."""
    return {"app.kubernetes.io/name": ROUTER_APP, "poolgate.dev/inferenceservice": isvc_name}


def _labels(isvc_name: str) -> dict[str, str]:
    return {**selector_labels(isvc_name), "app.kubernetes.io/instance": isvc_name,
            "app.kubernetes.io/managed-by": FIELD_MANAGER}


def _owner_reference(obj: dict[str, Any]) -> dict[str, Any]:
    meta = obj["metadata"]
    return {"apiVersion": API_VERSION, "kind": KIND, "name": meta["name"], "uid": meta["uid"],
            "controller": True, "blockOwnerDeletion": True}


def router_env(spec: InferenceServiceSpec, namespace: str, name: str) -> list[dict[str, Any]]:
    """The router's environment: the seed's three variables, then only what the spec sets."""
    env: list[dict[str, Any]] = [
        {"name": "MODEL_REF", "value": spec.model_ref},
        {"name": "MAX_CONCURRENCY", "value": str(spec.max_concurrency)},
        {"name": "KV_ENDPOINTS", "value": ",".join(spec.kv_endpoints)},
        {"name": "OVERFLOW", "value": spec.overflow},
        {"name": "PORT", "value": str(spec.port)},
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        # one global-limit key per InferenceService, even when two serve the same model
        {"name": "KV_KEY_PREFIX", "value": f"poolgate:router:{namespace}/{name}"},
    ]
    optional = {
        "MAX_QUEUE": spec.max_queue,
        "QUEUE_TIMEOUT_MS": spec.queue_timeout_ms,
        "BACKEND_URL": spec.backend_url,
        "SIMULATED_LATENCY_MS": spec.simulated_latency_ms,
        "GLOBAL_MAX_CONCURRENCY": spec.global_max_concurrency,
        "KV_FAILURE_MODE": spec.kv_failure_mode,
        "KV_LEASE_MS": spec.kv_lease_ms,
    }
    env.extend({"name": k, "value": str(v)} for k, v in optional.items() if v is not None)
    return env


def render(obj: dict[str, Any]) -> list[dict[str, Any]]:
    """The Deployment and Service for one InferenceService object (as read from the API).

    Raises `InvalidSpec` when the spec is invalid. The result is what server-side apply sends:
    full desired objects, owned by the InferenceService so deleting it garbage-collects them.
    """
    spec = parse_spec(obj)
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    resources = (spec.resources.model_dump() if spec.resources is not None
                 else DEFAULT_RESOURCES)
    container: dict[str, Any] = {
        "name": "router",
        "image": spec.image,
        "args": ["router"],
        "env": router_env(spec, namespace, name),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "http"},
                          "periodSeconds": 10, "timeoutSeconds": 2, "failureThreshold": 3},
        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http"},
                           "periodSeconds": 5, "timeoutSeconds": 2, "failureThreshold": 2},
        "resources": resources,
        "securityContext": {
            "runAsNonRoot": True, "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.image_pull_policy is not None:
        container["imagePullPolicy"] = spec.image_pull_policy

    def object_meta() -> dict[str, Any]:
        return {"name": router_name(name), "namespace": namespace, "labels": _labels(name),
                "ownerReferences": [_owner_reference(obj)]}

    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": selector_labels(name)},
            "template": {
                "metadata": {"labels": _labels(name),
                             "annotations": {"prometheus.io/scrape": "true",
                                             "prometheus.io/port": str(spec.port),
                                             "prometheus.io/path": "/metrics"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                        "runAsGroup": 10001,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "terminationGracePeriodSeconds": 30,
                    "containers": [container],
                },
            },
        },
    }
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": object_meta(),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(name),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }
    return [deployment, service]

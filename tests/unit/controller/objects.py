"""API objects as the Kubernetes API returns them, for the controller's unit tests."""

from __future__ import annotations

from typing import Any

import yaml

OURS = "poolgate.dev/gateway-controller"

CLUSTER = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: poolgate, generation: 1, resourceVersion: "1"}
spec: {controllerName: poolgate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: envoy, generation: 1, resourceVersion: "2"}
spec: {controllerName: gateway.envoyproxy.io/gatewayclass-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: inference-gateway, namespace: ml, generation: 2, resourceVersion: "3"}
spec:
  gatewayClassName: poolgate
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: https, port: 443, protocol: HTTPS}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: envoy-gateway, namespace: ml, generation: 1, resourceVersion: "4"}
spec:
  gatewayClassName: envoy
  listeners:
  - {name: http, port: 80, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm, namespace: ml, generation: 5, resourceVersion: "5"}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: llama}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, namespace: ml, generation: 1, resourceVersion: "6"}
spec:
  parentRefs: [{name: envoy-gateway}]
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: theirs}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: llama, namespace: ml, generation: 1, resourceVersion: "7"}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: llama}}
  endpointPickerRef: {name: builtin}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: theirs, namespace: ml, generation: 1, resourceVersion: "8"}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: theirs}}
  endpointPickerRef: {name: their-epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: theirs-model, namespace: ml, resourceVersion: "9"}
spec: {modelName: theirs, poolRef: {name: theirs}}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: breaker-for-theirs, namespace: ml, resourceVersion: "10"}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: other}]
  circuitBreaker: {maxParallelRequests: 1}
"""


def cluster(extra: str = "") -> list[dict[str, Any]]:
    """The objects above (plus `extra` YAML documents)."""
    return [d for d in yaml.safe_load_all(CLUSTER + ("---\n" + extra if extra else "")) if d]


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return next(o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name)

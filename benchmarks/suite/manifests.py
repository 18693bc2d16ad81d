"""The gateway configuration the suite serves: one Gateway, one catch-all route, one pool.

The simulator writes the pool's `LocalEndpoints` file into the same directory
(`--endpoints-file DIR/endpoints.yaml --endpoints-label app=sim`).
"""

from __future__ import annotations

from pathlib import Path

POOL_LABEL_KEY = "app"
POOL_LABEL_VALUE = "sim"
ENDPOINTS_FILE = "endpoints.yaml"
GATEWAY_FILE = "gateway.yaml"

_TEMPLATE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: bench-gateway
spec:
  gatewayClassName: poolgate
  listeners:
  - name: http
    port: 80
    protocol: HTTP
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: bench-route
spec:
  parentRefs:
  - name: bench-gateway
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - group: inference.networking.k8s.io
      kind: InferencePool
      name: {pool}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: {pool}
spec:
  targetPorts:
  - number: 8000
  selector:
    matchLabels:
      {key}: {value}
  endpointPickerRef:
    name: poolgate-endpoint-picker
    port:
      number: 9002
"""


def gateway_manifests(pool: str = "sim-pool") -> str:
    """The Gateway, HTTPRoute and InferencePool (v1, selector app=sim) as one YAML stream."""
    return _TEMPLATE.format(pool=pool, key=POOL_LABEL_KEY, value=POOL_LABEL_VALUE)


def write_config_dir(directory: Path) -> Path:
    """Write the manifests into `directory` (created) and return where the endpoints file goes."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / GATEWAY_FILE).write_text(gateway_manifests())
    return directory / ENDPOINTS_FILE

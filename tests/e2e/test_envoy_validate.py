"""Envoy itself accepts every bootstrap `poolgate envoy-config` renders (`envoy --mode validate`
parses and checks the whole configuration offline, every typed extension included)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.envoy_process import validate

pytestmark = pytest.mark.e2e

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_002_IN_FLIGHT = (Path(__file__).resolve().parents[1] / "unit" / "config" / "fixtures"
                      / "seed-002" / "backend-policy-in-flight.yaml")

# Every field the renderer translates, in one set of manifests.
KITCHEN_SINK = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: poolgate
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: other, port: 81, protocol: HTTP, hostname: "*.example.com"}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: open, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: open}}
  endpointPickerRef: {name: epp, failureMode: FailOpen}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: closed, namespace: default}
spec:
  targetPortNumber: 8000
  selector: {app: closed}
  extensionRef: {name: epp}
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: eps, namespace: default}
spec:
  labels: {app: open}
  addresses: [127.0.0.1:18001, 127.0.0.1:18002]
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: eps-closed, namespace: default}
spec:
  labels: {app: closed}
  addresses: [10.0.0.1]
---
apiVersion: networking.gke.io/v1
kind: HealthCheckPolicy
metadata: {name: hc, namespace: default}
spec:
  targetRef: {group: inference.networking.k8s.io, kind: InferencePool, name: open}
  default:
    config:
      type: HTTP
      httpHealthCheck: {requestPath: /health, port: 9000}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [a.example.com, "*.example.com"]
  rules:
  - name: chat
    matches:
    - path: {type: PathPrefix, value: /v1/}
      method: POST
      headers: [{name: x-tier, value: gold}, {name: x-re, type: RegularExpression, value: "a.*"}]
      queryParams: [{name: q, value: "1"}, {name: r, type: RegularExpression, value: "[0-9]+"}]
    - path: {type: RegularExpression, value: "/v[0-9]+/completions"}
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-set, value: a}, {name: Host, value: rewritten.local}]
        add: [{name: x-add, value: b}]
        remove: [x-gone]
    - type: URLRewrite
      urlRewrite: {hostname: upstream.local}
    timeouts: {request: 300s, backendRequest: 120s}
    backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: open, weight: 3}
    - {group: inference.networking.x-k8s.io, kind: InferencePool, name: closed, weight: 1}
    - {group: poolgate.dev, kind: Address, name: localhost, port: 9000, weight: 1}
    - {group: inference.networking.k8s.io, kind: InferencePool, name: missing, weight: 1}
  - matches: [{path: {type: Exact, value: /exact}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /x}}}]
    backendRefs: [{group: poolgate.dev, kind: Address, name: 127.0.0.1, port: 9000}]
  - matches: [{path: {type: PathPrefix, value: /strip}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{group: poolgate.dev, kind: Address, name: 127.0.0.1, port: 9000}]
  - filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}]
    backendRefs: [{group: poolgate.dev, kind: Address, name: 127.0.0.2, port: 9000}]
  - matches: [{path: {type: PathPrefix, value: /nothing}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: missing}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: everything, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  circuitBreaker:
    maxConnections: 10
    maxPendingRequests: 2
    maxParallelRequests: 3
    maxParallelRetries: 4
    maxRequestsPerConnection: 100
    perEndpoint: {maxConnections: 5}
  retry:
    numRetries: 3
    retryOn: {triggers: [connect-failure, reset, 5xx, gateway-error, retriable-4xx, refused-stream,
                         reset-before-request, unavailable, cancelled], httpStatusCodes: [503]}
    perRetry: {timeout: 2s, backOff: {baseInterval: 100ms, maxInterval: 1s}}
  timeout:
    tcp: {connectTimeout: 2s}
    http: {connectionIdleTimeout: 3s, requestTimeout: 60s}
  rateLimit:
    type: Local
    local:
      rules:
      - limit: {requests: 10, unit: Minute}
      - limit: {requests: 2, unit: Second}
  healthCheck:
    passive:
      consecutive5XxErrors: 3
      consecutiveGatewayErrors: 2
      consecutiveLocalOriginFailures: 4
      splitExternalLocalOriginErrors: true
      interval: 1s
      baseEjectionTime: 10s
      maxEjectionPercent: 50
    active:
      type: HTTP
      http: {path: /health, method: HEAD, expectedStatuses: [200, 204]}
      interval: 2s
      timeout: 500ms
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: headers, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  headers: {enableEnvoyHeaders: true}
"""


def _render(tmp_path: Path, *args: str) -> Path:
    out = tmp_path / "envoy.yaml"
    done = subprocess.run([sys.executable, "-m", "poolgate", "envoy-config", *args,
                           "--port-map", "80=18080", "--port-map", "81=18081", "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.parametrize("manifests", [
    pytest.param(["seed-000-circuit-breaker"], id="seed-000"),
    pytest.param(["seed-002-multi-cluster"], id="seed-002"),
    pytest.param(["seed-002-multi-cluster/local", "seed-002-multi-cluster/seed/mcig.yaml",
                  str(SEED_002_IN_FLIGHT)], id="seed-002-in-flight"),
])
def test_envoy_accepts_the_examples(tmp_path: Path, manifests: list[str]) -> None:
    args = [a for m in manifests for a in ("-f", str(EXAMPLES / m))]
    config = _render(tmp_path, *args)
    done = validate(config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "OK" in done.stdout


@pytest.mark.parametrize("mode", ["FULL_DUPLEX_STREAMED", "STREAMED", "NONE"])
def test_envoy_accepts_every_translated_field(tmp_path: Path, mode: str) -> None:
    manifests = tmp_path / "sink.yaml"
    manifests.write_text(KITCHEN_SINK)
    config = _render(tmp_path, "-f", str(manifests), "--epp-address", "epp.default.svc:9002",
                     "--response-body-mode", mode)
    text = config.read_text()
    for expected in ("descriptors", "outlier_detection", "health_check_config",
                     "weighted_clusters", "poolgate-invalid-backend", "STRICT_DNS",
                     "host_rewrite_literal", "regex_rewrite", "per_host_thresholds",
                     "suppress_envoy_headers: false", "failure_mode_allow: true"):
        assert expected in text, expected
    done = validate(config)
    assert done.returncode == 0, done.stdout + done.stderr

"""BackendTrafficPolicy fields on Envoy clusters and filters, Service and Address backends."""

from __future__ import annotations

from pathlib import Path

from tests.unit.config.manifests import GATEWAY, POOL, route
from tests.unit.envoyconf.render import cluster, hcm, http_filter, rendered, routes

ADDRESS = "{group: poolgate.dev, kind: Address, name: 127.0.0.1, port: 9000}"
POOL_REF = "{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}"
KEY = "httproute/default/r/rule/0/backend/0"


def policy(body: str, target: str = "r") -> str:
    return (f"apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\n"
            f"metadata: {{name: p}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, "
            f"kind: HTTPRoute, name: {target}}}]\n{body}")


def test_circuit_breaker_every_field(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"- backendRefs: [{ADDRESS}]"), policy("""
  circuitBreaker:
    maxConnections: 10
    maxPendingRequests: 2
    maxParallelRequests: 3
    maxParallelRetries: 4
    maxRequestsPerConnection: 100
    perEndpoint: {maxConnections: 5}
  timeout:
    tcp: {connectTimeout: 2s}
    http: {connectionIdleTimeout: 1s, requestTimeout: 60s}
"""))
    c = cluster(out, KEY)
    assert c["circuit_breakers"] == {
        "thresholds": [{"priority": "DEFAULT", "max_connections": 10, "max_pending_requests": 2,
                        "max_requests": 3, "max_retries": 4}],
        "per_host_thresholds": [{"priority": "DEFAULT", "max_connections": 5}],
    }
    options = c["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]
    assert options["common_http_protocol_options"] == {"idle_timeout": "1s",
                                                        "max_requests_per_connection": 100}
    assert c["connect_timeout"] == "2s"
    assert c["type"] == "STATIC"
    assert c["lb_policy"] == "LEAST_REQUEST"
    [r] = routes(out)
    assert r["route"]["timeout"] == "60s"


def test_defaults_without_a_policy(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"- backendRefs: [{ADDRESS}]"))
    c = cluster(out, KEY)
    assert c["circuit_breakers"]["thresholds"][0] == {
        "priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1024,
        "max_requests": 1024, "max_retries": 1024}
    assert c["connect_timeout"] == "10s"
    # poolgate never reuses a connection idle 4 s (uvicorn closes them at 5 s).
    assert c["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"][
        "common_http_protocol_options"] == {"idle_timeout": "4s"}
    assert "outlier_detection" not in c
    # No pool: no ext_proc filter and no picker cluster.
    assert [f["name"] for f in hcm(out)["http_filters"]] == ["envoy.filters.http.router"]
    assert [c["name"] for c in out.config["static_resources"]["clusters"]] == [KEY]


def test_host_name_address_is_strict_dns(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route(
        "r", "- backendRefs: [{group: poolgate.dev, kind: Address, name: localhost, port: 9000}]"))
    c = cluster(out, KEY)
    assert c["type"] == "STRICT_DNS"
    assert c["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "localhost", "port_value": 9000}}


def test_passive_and_active_health(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, POOL, route("r", f"- backendRefs: [{POOL_REF}]"), policy("""
  healthCheck:
    passive:
      consecutive5XxErrors: 3
      consecutiveGatewayErrors: 2
      interval: 1s
      baseEjectionTime: 10s
      maxEjectionPercent: 50
    active:
      type: HTTP
      http: {path: /health, expectedStatuses: [200, 204]}
      interval: 2s
      timeout: 500ms
      unhealthyThreshold: 2
      healthyThreshold: 1
"""))
    c = cluster(out, KEY)
    assert c["outlier_detection"] == {
        "consecutive_5xx": 3, "interval": "1s", "base_ejection_time": "10s",
        "max_ejection_percent": 50, "enforcing_success_rate": 0,
        "split_external_local_origin_errors": False, "consecutive_local_origin_failure": 5,
        "always_eject_one_host": True, "consecutive_gateway_failure": 2,
        "enforcing_consecutive_gateway_failure": 100,
    }
    assert c["health_checks"] == [{
        "timeout": "0.5s", "interval": "2s", "unhealthy_threshold": 2, "healthy_threshold": 1,
        "http_health_check": {"path": "/health", "expected_statuses": [
            {"start": 200, "end": 201}, {"start": 204, "end": 205}]},
    }]
    # POOL declares 127.0.0.1 (the target port) and 127.0.0.2:9000.
    eps = c["load_assignment"]["endpoints"][0]["lb_endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in eps] == [
        {"address": "127.0.0.1", "port_value": 8000}, {"address": "127.0.0.2", "port_value": 9000}]


def test_local_rate_limit_is_shared_by_the_policy(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"""
    - matches: [{{path: {{type: PathPrefix, value: /a}}}}]
      backendRefs: [{ADDRESS}]
    - matches: [{{path: {{type: PathPrefix, value: /b}}}}]
      backendRefs: [{ADDRESS}]
    """), policy("""
  rateLimit:
    type: Local
    local:
      rules:
      - limit: {requests: 10, unit: Minute}
"""))
    name = "envoy.filters.http.local_ratelimit/default/p"
    f = http_filter(out, name)
    assert f["disabled"] is True
    config = f["typed_config"]
    assert config["token_bucket"] == {"max_tokens": 10, "tokens_per_fill": 10,
                                      "fill_interval": "60s"}
    assert config["enable_x_ratelimit_headers"] == "DRAFT_VERSION_03"
    assert "descriptors" not in config
    # Both rules' routes turn the one filter (one set of buckets) on.
    for r in routes(out):
        assert r["typed_per_filter_config"][name] == {
            "@type": "type.googleapis.com/envoy.config.route.v3.FilterConfig", "config": {}}
    assert [f["name"] for f in hcm(out)["http_filters"]] == [name, "envoy.filters.http.router"]


def test_several_rate_limit_rules_become_descriptors(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"- backendRefs: [{ADDRESS}]"), policy("""
  rateLimit:
    type: Local
    local:
      rules:
      - limit: {requests: 10, unit: Minute}
      - limit: {requests: 2, unit: Second}
"""))
    config = http_filter(out, "envoy.filters.http.local_ratelimit/default/p")["typed_config"]
    assert config["descriptors"] == [{
        "entries": [{"key": "generic_key", "value": "rule-1"}],
        "token_bucket": {"max_tokens": 2, "tokens_per_fill": 2, "fill_interval": "1s"}}]
    assert config["rate_limits"] == [{"actions": [{"generic_key": {"descriptor_value": "rule-1"}}]}]
    assert any(e.field == "spec.rateLimit.local.rules" for e in out.untranslated)


def test_envoy_headers_switch(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"- backendRefs: [{ADDRESS}]"), """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: ClientTrafficPolicy
metadata: {name: c}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  headers: {enableEnvoyHeaders: true}
""")
    assert http_filter(out, "envoy.filters.http.router")["typed_config"][
        "suppress_envoy_headers"] is False


def test_fail_open_pool(tmp_path: Path) -> None:
    pool_v1 = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: m}}
  endpointPickerRef: {name: epp, failureMode: FailOpen}
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: eps}
spec:
  labels: {app: m}
  addresses: [10.0.0.1]
"""
    ref = "{group: inference.networking.k8s.io, kind: InferencePool, name: pool}"
    out = rendered(tmp_path, GATEWAY, pool_v1, route("r", f"- backendRefs: [{ref}]"))
    [r] = routes(out)
    assert r["typed_per_filter_config"]["envoy.filters.http.ext_proc"]["overrides"][
        "failure_mode_allow"] is True

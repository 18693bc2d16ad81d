from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.config.build import load_snapshot
from poolgate.config.snapshot import Backend, Snapshot
from poolgate.traffic.retry import DEFAULT_TRIGGERS as DEFAULT_RETRY_TRIGGERS
from tests.unit.config.manifests import GATEWAY, POOL, load, messages, route

REPO = Path(__file__).resolve().parents[3]


def built(tmp_path: Path, *docs: str) -> Snapshot:
    result = load(tmp_path, *docs)
    assert result.snapshot is not None, messages(result)
    return result.snapshot


def backends_of(s: Snapshot, name: str) -> tuple[Backend, ...]:
    return next(r for r in s.routes if r.name == name).rules[0].backends


def test_seed_000_example_loads_without_problems() -> None:
    result = load_snapshot([REPO / "examples" / "seed-000-circuit-breaker"])
    assert result.problems == ()
    s = result.snapshot
    assert s is not None
    decision = s.route(80, "example.com", "POST", "/v1/chat/completions", {}, {})
    assert decision is not None
    (backend,) = decision.rule.backends
    assert backend.key == "httproute/default/test-httproute/rule/0/backend/0"
    assert backend.pool is not None and backend.pool.key == "default/vllm-llama2-7b-pool"
    assert [e.address for e in backend.pool.endpoints] == ["127.0.0.1:8000"]
    assert backend.pool.failure_mode == "FailClose"
    assert backend.pool.picker_ref == "inference-gateway-ext-proc"
    policy = decision.rule.policy
    assert policy is not None and policy.circuit_breaker is not None
    assert policy.circuit_breaker.max_parallel_requests == 1
    assert policy.circuit_breaker.max_pending_requests == 1
    assert policy.circuit_breaker.max_connections == 1024
    assert s.models() == ("/model/llama2",)
    spec = s.inference_model("default/vllm-llama2-7b-pool", "/model/llama2")
    assert spec is not None and spec.criticality == "Critical"
    assert s.envoy_headers is False
    assert dict(result.skipped) == {"ConfigMap": 1, "Deployment": 2, "Service": 1,
                                    "ServiceAccount": 1}


def test_seed_002_manifests_load_without_errors() -> None:
    result = load_snapshot([Path(__file__).parent / "fixtures" / "seed-002"])
    assert result.errors == (), [str(p) for p in result.errors]
    assert result.snapshot is not None
    assert result.loaded["GCPBackendPolicy"] == 3
    assert result.loaded["HealthCheckPolicy"] == 1
    assert result.loaded["AutoscalingMetric"] == 1
    # The pool is installed by Helm in each cluster, so the import resolves to nothing: 500.
    (backend,) = result.snapshot.routes[0].rules[0].backends
    assert backend.error is not None and "GCPInferencePoolImport" in backend.error


def test_pool_endpoints_come_from_local_endpoints_with_port_defaulting(tmp_path: Path) -> None:
    s = built(tmp_path, GATEWAY, POOL)
    pool = s.pools["default/pool"]
    assert [e.address for e in pool.endpoints] == ["127.0.0.1:8000", "127.0.0.2:9000"]
    assert pool.endpoints[0].labels == {"app": "m"}
    assert s.all_endpoints() == pool.endpoints
    assert not s.has_address_backends()


def test_v1_pool_gets_an_endpoint_per_target_port(tmp_path: Path) -> None:
    s = built(tmp_path, """
        apiVersion: inference.networking.k8s.io/v1
        kind: InferencePool
        metadata: {name: v1pool}
        spec:
          targetPorts: [{number: 8000}, {number: 8001}]
          selector: {matchLabels: {app: m}}
          endpointPickerRef: {name: epp, failureMode: FailOpen}
        ---
        apiVersion: poolgate.dev/v1alpha1
        kind: LocalEndpoints
        metadata: {name: eps}
        spec:
          labels: {app: m}
          addresses: [10.0.0.1, "10.0.0.2:7000"]
    """)
    pool = s.pools["default/v1pool"]
    assert [e.address for e in pool.endpoints] == ["10.0.0.1:8000", "10.0.0.2:7000", "10.0.0.1:8001"]
    assert (pool.target_port, pool.failure_mode, pool.picker_ref) == (8000, "FailOpen", "epp")


def test_pool_without_endpoints_is_a_warning(tmp_path: Path) -> None:
    result = load(tmp_path, POOL.replace("labels: {app: m}", "labels: {app: other}"))
    assert result.snapshot is not None
    assert result.snapshot.pools["default/pool"].endpoints == ()
    assert ("warning: no LocalEndpoints in namespace default match selector app=m; the pool "
            "will answer 503") in messages(result)


def test_backend_refs_resolve_to_pools_addresses_services_or_errors(tmp_path: Path) -> None:
    s = built(tmp_path, GATEWAY, POOL, """
        apiVersion: poolgate.dev/v1alpha1
        kind: LocalEndpoints
        metadata: {name: svc}
        spec:
          labels: {poolgate.dev/service: echo}
          addresses: ["127.0.0.9:7000"]
    """, route("r", """
        - backendRefs:
          - {group: inference.networking.x-k8s.io, kind: InferencePool, name: pool, weight: 3}
          - {group: inference.networking.k8s.io, kind: InferencePool, name: missing}
          - {group: poolgate.dev, kind: Address, name: localhost, port: 8123, weight: 0}
          - {kind: Service, name: echo, port: 80}
          - {kind: Service, name: nothing, port: 80}
          - {group: example.com, kind: Bucket, name: b}
    """))
    b = backends_of(s, "r")
    assert b[0].pool is not None and b[0].pool.key == "default/pool" and b[0].weight == 3
    assert b[1].error == "backendRef to InferencePool default/missing: no such pool"
    assert (b[2].host, b[2].port, b[2].weight) == ("localhost", 8123, 0)
    assert (b[3].host, b[3].port) == ("127.0.0.9", 7000)
    assert b[4].error is not None and "poolgate.dev/service: nothing" in b[4].error
    assert b[5].error is not None and "kind Bucket in group example.com is not supported" in b[5].error
    assert [x.key for x in b] == [f"httproute/default/r/rule/0/backend/{j}" for j in range(6)]
    assert s.has_address_backends()


def test_unresolved_backend_refs_are_warnings(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, route("r", """
        - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: nope}]
    """))
    assert result.snapshot is not None
    assert messages(result) == [
        "warning: spec.rules[0].backendRefs[0]: backendRef to InferencePool default/nope: no such "
        "pool; requests sent to it get 500"
    ]


def test_cross_namespace_backend_needs_a_reference_grant(tmp_path: Path) -> None:
    pool_in_ml = POOL.replace("metadata: {name: pool}", "metadata: {name: pool, namespace: ml}") \
        .replace("metadata: {name: eps}", "metadata: {name: eps, namespace: ml}")
    ref = route("r", """
        - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool, namespace: ml}]
    """)
    s = built(tmp_path, GATEWAY, pool_in_ml, ref)
    (b,) = backends_of(s, "r")
    assert b.error is not None and "no ReferenceGrant in ml allows it" in b.error
    grant = """
        apiVersion: gateway.networking.k8s.io/v1beta1
        kind: ReferenceGrant
        metadata: {name: g, namespace: ml}
        spec:
          from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: default}]
          to: [{group: inference.networking.x-k8s.io, kind: InferencePool}]
    """
    s = built(tmp_path, GATEWAY, pool_in_ml, ref, grant)
    (b,) = backends_of(s, "r")
    assert b.pool is not None and b.pool.key == "ml/pool"
    assert [e.address for e in b.pool.endpoints] == ["127.0.0.1:8000", "127.0.0.2:9000"]


def test_unattached_routes_are_warnings_and_not_routed(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, POOL, route("r", "- {}", parent="{name: nope}"))
    assert result.snapshot is not None and result.snapshot.routes == ()
    assert messages(result) == [
        "warning: spec.parentRefs[0]: Gateway default/nope not found; the route is not attached to it",
        "warning: spec.rules[0] has no backendRefs; matching requests get 500",
    ]


def test_duplicate_resources_are_errors(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, POOL, POOL.split("---")[0])
    assert result.snapshot is None
    (p,) = result.errors
    assert p.kind == "InferencePool" and p.doc_index == 4
    assert p.message.startswith("duplicate InferencePool default/pool (first defined at ")


def test_inference_models_and_objectives(tmp_path: Path) -> None:
    result = load(tmp_path, POOL, """
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceModel
        metadata: {name: chat}
        spec:
          modelName: chat
          criticality: Sheddable
          poolRef: {name: pool}
          targetModels: [{name: base}, {name: lora-1}]
        ---
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceModel
        metadata: {name: orphan}
        spec:
          modelName: orphan
          poolRef: {name: missing}
        ---
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceObjective
        metadata: {name: batch}
        spec:
          poolRef: {name: pool, group: inference.networking.k8s.io}
        ---
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceObjective
        metadata: {name: urgent}
        spec:
          priority: 10
          poolRef: {name: pool}
    """)
    s = result.snapshot
    assert s is not None
    spec = s.inference_model("default/pool", "chat")
    assert spec is not None and spec.criticality == "Sheddable"
    assert [(t.name, t.weight) for t in spec.target_models] == [("base", 1), ("lora-1", 1)]
    assert s.inference_model("default/pool", "orphan") is None
    assert s.models() == ("chat",)
    batch, urgent = s.objective("batch"), s.objective("urgent")
    assert batch is not None and batch.priority == 0 and batch.pool_key == "default/pool"
    assert urgent is not None and urgent.priority == 10
    assert s.objective("nope") is None
    assert ("warning: spec.poolRef: InferencePool default/missing not found; this InferenceModel "
            "has no effect") in messages(result)


def test_target_model_weights_must_be_all_or_none(tmp_path: Path) -> None:
    result = load(tmp_path, POOL, """
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferenceModel
        metadata: {name: m}
        spec:
          modelName: m
          poolRef: {name: pool}
          targetModels: [{name: a, weight: 1}, {name: b}]
    """)
    assert result.snapshot is None
    assert "set weight on every target or on none" in result.errors[0].message


BTP = """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: {kind}, name: {target}{section}}}]
{body}
"""


def btp(name: str, kind: str, target: str, body: str, section: str = "") -> str:
    return BTP.format(name=name, kind=kind, target=target, body=body,
                      section=f", sectionName: {section}" if section else "")


def test_route_policy_wins_over_gateway_policy(tmp_path: Path) -> None:
    s = built(
        tmp_path, GATEWAY, POOL,
        route("with-own", "- {}\n- {name: special}"), route("plain", "- {}"),
        btp("gw", "Gateway", "gw", "  timeout: {http: {requestTimeout: 30s}}"),
        btp("own", "HTTPRoute", "with-own", "  circuitBreaker: {maxParallelRequests: 5}"),
        btp("rule", "HTTPRoute", "with-own", "  retry: {}", section="special"),
    )
    with_own = next(r for r in s.routes if r.name == "with-own")
    plain = next(r for r in s.routes if r.name == "plain")
    assert with_own.rules[0].policy is not None and with_own.rules[0].policy.name == "own"
    assert with_own.rules[1].policy is not None and with_own.rules[1].policy.name == "rule"
    assert plain.rules[0].policy is not None and plain.rules[0].policy.name == "gw"
    assert plain.rules[0].effective_request_timeout == 30.0


def test_policy_problems(tmp_path: Path) -> None:
    result = load(
        tmp_path, GATEWAY, route("r", "- {}"),
        btp("first", "HTTPRoute", "r", "  retry: {numRetries: 1}"),
        btp("second", "HTTPRoute", "r", "  retry: {numRetries: 3}"),
        btp("lost", "HTTPRoute", "gone", "  retry: {}"),
    )
    assert result.snapshot is not None
    assert result.snapshot.routes[0].rules[0].policy is not None
    assert result.snapshot.routes[0].rules[0].policy.name == "first"
    text = "\n".join(messages(result))
    assert ("HTTPRoute default/r already has BackendTrafficPolicy default/first; the older policy "
            "wins") in text
    assert "target HTTPRoute default/gone not found; the policy does not apply to it" in text


def test_retry_defaults_follow_envoy_gateway(tmp_path: Path) -> None:
    s = built(tmp_path, GATEWAY, route("r", "- {}"), btp("p", "HTTPRoute", "r", "  retry: {}"))
    policy = s.routes[0].rules[0].policy
    assert policy is not None and policy.retry is not None
    r = policy.retry
    assert (r.num_retries, r.triggers, r.http_status_codes) == (2, DEFAULT_RETRY_TRIGGERS,
                                                                frozenset({503}))
    assert r.backoff_base == 0.025 and r.per_retry_timeout is None
    assert r.backoff_max == pytest.approx(0.25)


def test_full_policy_is_resolved(tmp_path: Path) -> None:
    body = """
  retry:
    numRetries: 4
    retryOn: {triggers: [reset], httpStatusCodes: [502, 504]}
    perRetry: {timeout: 2s, backOff: {baseInterval: 100ms}}
  timeout:
    http: {requestTimeout: 1m, connectionIdleTimeout: 1h}
    tcp: {connectTimeout: 500ms}
  rateLimit:
    type: Local
    local:
      rules:
      - limit: {requests: 10, unit: Minute}
      - clientSelectors: [{headers: [{name: x-user, value: a}]}]
        limit: {requests: 1, unit: Second}
  healthCheck:
    active: {type: HTTP, http: {path: /health}, interval: 5s}
    passive: {consecutive5XxErrors: 3}
"""
    result = load(tmp_path, GATEWAY, route("r", "- {}"), btp("p", "HTTPRoute", "r", body))
    assert result.snapshot is not None
    p = result.snapshot.routes[0].rules[0].policy
    assert p is not None and p.retry is not None and p.health_check is not None
    assert p.retry.num_retries == 4
    assert p.retry.triggers == {"reset", "retriable-status-codes"}
    assert p.retry.http_status_codes == {502, 504}
    assert (p.retry.per_retry_timeout, p.retry.backoff_base) == (2.0, 0.1)
    assert p.retry.backoff_max == pytest.approx(1.0)
    assert (p.request_timeout, p.connection_idle_timeout, p.connect_timeout) == (60.0, 3600.0, 0.5)
    assert [(x.requests, x.unit_seconds) for x in p.rate_limits] == [(10, 60.0)]
    assert any("clientSelectors are not supported yet" in m for m in messages(result))
    active, passive = p.health_check.active, p.health_check.passive
    assert active is not None and (active.path, active.interval, active.timeout) == ("/health", 5.0, 1.0)
    assert active.expected_statuses == {200} and active.unhealthy_threshold == 3
    assert passive is not None and passive.consecutive_5xx == 3
    assert (passive.base_ejection_time, passive.max_ejection_percent) == (30.0, 10)


def test_route_timeout_wins_over_policy_timeout(tmp_path: Path) -> None:
    s = built(tmp_path, GATEWAY, route("r", "- timeouts: {request: 5s}"),
              btp("p", "HTTPRoute", "r", "  timeout: {http: {requestTimeout: 30s}}"))
    rule = s.routes[0].rules[0]
    assert (rule.request_timeout, rule.effective_request_timeout) == (5.0, 5.0)


def test_client_traffic_policy_enables_envoy_headers(tmp_path: Path) -> None:
    ctp = """
        apiVersion: gateway.envoyproxy.io/v1alpha1
        kind: ClientTrafficPolicy
        metadata: {name: c}
        spec:
          targetRef: {group: gateway.networking.k8s.io, kind: Gateway, name: gw}
          headers: {enableEnvoyHeaders: true}
    """
    assert built(tmp_path, GATEWAY, ctp).envoy_headers is True
    assert built(tmp_path, GATEWAY, ctp.replace("true", "false")).envoy_headers is False


def test_missing_envoy_proxy_is_a_warning(tmp_path: Path) -> None:
    gw = GATEWAY.replace("gatewayClassName: c", "gatewayClassName: c\n  infrastructure:\n"
                         "    parametersRef: {group: gateway.envoyproxy.io, kind: EnvoyProxy, name: px}")
    result = load(tmp_path, gw)
    assert messages(result) == [
        "warning: spec.infrastructure.parametersRef: EnvoyProxy default/px not found"]


def test_filters_are_compiled_and_unsupported_ones_turn_the_rule_into_500s(tmp_path: Path) -> None:
    s = built(tmp_path, GATEWAY, route("r", """
        - matches: [{path: {type: PathPrefix, value: /v1}}]
          filters:
          - type: RequestHeaderModifier
            requestHeaderModifier:
              set: [{name: X-Set, value: "1"}]
              add: [{name: X-Add, value: "2"}]
              remove: [X-Drop]
          - type: URLRewrite
            urlRewrite: {hostname: upstream.local, path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}}
          backendRefs: [{group: poolgate.dev, kind: Address, name: h, port: 1}]
        - matches: [{path: {type: PathPrefix, value: /old}}]
          filters: [{type: RequestRedirect, requestRedirect: {hostname: new.example.com}}]
          backendRefs: [{group: poolgate.dev, kind: Address, name: h, port: 1}]
    """))
    first, second = s.routes[0].rules
    assert first.header_modifier is not None
    assert first.header_modifier.set == (("X-Set", "1"),)
    assert first.header_modifier.remove == ("X-Drop",)
    assert first.url_rewrite is not None
    assert (first.url_rewrite.hostname, first.url_rewrite.prefix_replacement) == ("upstream.local", "/v2")
    (b,) = second.backends
    assert b.error is not None and "filter type RequestRedirect is not supported" in b.error


def test_prefix_rewrite_needs_prefix_matches(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, route("r", """
        - matches: [{path: {type: Exact, value: /v1}}]
          filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    """))
    assert result.snapshot is None
    assert "ReplacePrefixMatch needs every match of the rule to be a PathPrefix" in result.errors[0].message


def test_invalid_regex_is_an_error(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, route("r", """
        - matches: [{path: {type: RegularExpression, value: "/v1/(unclosed"}}]
    """))
    assert result.snapshot is None
    assert result.errors[0].message.startswith("spec.rules[0].matches[0]: invalid regular expression")


def test_policy_fields_poolgate_does_not_act_on_are_reported(tmp_path: Path) -> None:
    body = """
  circuitBreaker: {maxParallelRequest: 1}
  loadBalancer: {type: RoundRobin}
  healthCheck: {passive: {consecutive5XxErrors: 3, ejectAfter: 2}}
"""
    result = load(tmp_path, GATEWAY, route("r", "- {}"), btp("p", "HTTPRoute", "r", body))
    assert result.snapshot is not None
    reported = [m for m in messages(result) if "it is ignored" in m]
    # Each once: the loader reports them for every kind, the policy build adds none of its own.
    assert reported == [
        "warning: spec.circuitBreaker.maxParallelRequest is not a field poolgate supports; it is "
        "ignored (did you mean maxParallelRequests?)",
        "warning: spec.loadBalancer is a field of BackendTrafficPolicy that poolgate does not act "
        "on; it is ignored",
        "warning: spec.healthCheck.passive.ejectAfter is not a field poolgate supports; it is "
        "ignored",
    ]


def test_invalid_policy_values_are_errors_at_load(tmp_path: Path) -> None:
    body = """
  circuitBreaker: {maxRequestsPerConnection: 0}
  healthCheck: {passive: {consecutive5XxErrors: 0}}
"""
    result = load(tmp_path, GATEWAY, route("r", "- {}"), btp("p", "HTTPRoute", "r", body))
    errors = [str(p) for p in result.errors]
    assert any("spec.circuitBreaker: circuit breaker max_requests_per_connection must be >= 1"
               in m for m in errors), errors
    assert any("spec.healthCheck.passive: outlier consecutive_5xx must be" in m
               for m in errors), errors

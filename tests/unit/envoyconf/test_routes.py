"""HTTPRoutes as Envoy virtual hosts and routes: matches, precedence, filters, backends."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.config.matching import first_segment
from poolgate.envoy.routes import ordered_candidates
from tests.unit.config.manifests import GATEWAY, POOL, load, route
from tests.unit.envoyconf.render import hcm, rendered, routes

ADDRESS = "{group: poolgate.dev, kind: Address, name: 127.0.0.1, port: 9000}"
POOL_REF = "{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}"

PRECEDENCE = route("r", f"""
- matches: [{{path: {{type: PathPrefix, value: /}}}}]
  backendRefs: [{ADDRESS}]
- matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
  backendRefs: [{ADDRESS}]
- matches: [{{path: {{type: Exact, value: /v1/models}}}}]
  backendRefs: [{ADDRESS}]
- matches: [{{path: {{type: RegularExpression, value: "/v[0-9]+/chat.*"}}}}]
  backendRefs: [{ADDRESS}]
- matches: [{{path: {{type: PathPrefix, value: /v1/chat}}, method: POST}}]
  backendRefs: [{ADDRESS}]
- matches:
  - path: {{type: PathPrefix, value: /v1/chat}}
    headers: [{{name: x-tier, value: gold}}]
    queryParams: [{{name: debug, value: "1"}}]
  backendRefs: [{ADDRESS}]
- matches: [{{path: {{type: PathPrefix, value: /admin}}}}]
  backendRefs: [{ADDRESS}]
""")


def test_matches_become_envoy_matches(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, PRECEDENCE)
    matches = {r["name"]: r["match"] for r in routes(out)}
    # Exact, then regular expression, then the longest prefix; method before headers; two
    # segments (admin, v1) never compete, and come in name order.
    assert list(matches) == [f"default/r/rule/{i}/match/0" for i in (2, 3, 6, 4, 5, 1, 0)]
    assert matches == {
        "default/r/rule/2/match/0": {"path": "/v1/models"},
        "default/r/rule/3/match/0": {"safe_regex": {"regex": "/v[0-9]+/chat.*"}},
        "default/r/rule/5/match/0": {
            "path_separated_prefix": "/v1/chat",
            "headers": [{"name": "x-tier", "string_match": {"exact": "gold"}}],
            "query_parameters": [{"name": "debug", "string_match": {"exact": "1"}}],
        },
        "default/r/rule/4/match/0": {
            "path_separated_prefix": "/v1/chat",
            "headers": [{"name": ":method", "string_match": {"exact": "POST"}}],
        },
        "default/r/rule/1/match/0": {"path_separated_prefix": "/v1"},
        "default/r/rule/6/match/0": {"path_separated_prefix": "/admin"},
        "default/r/rule/0/match/0": {"prefix": "/"},
    }


@pytest.mark.parametrize("method,path,headers,query", [
    pytest.param("GET", "/v1/models", {}, {}, id="exact"),
    pytest.param("POST", "/v1/chat/completions", {}, {}, id="method"),
    pytest.param("GET", "/v1/chat/completions", {"x-tier": "gold"}, {"debug": "1"},
                 id="headers-and-query"),
    pytest.param("GET", "/v1/chat/completions", {}, {}, id="regex-before-prefix"),
    pytest.param("GET", "/v1/completions", {}, {}, id="longest-prefix"),
    pytest.param("GET", "/v1x", {}, {}, id="prefix-is-whole-segments"),
    pytest.param("GET", "/admin/x", {}, {}, id="other-segment"),
    pytest.param("GET", "/", {}, {}, id="root"),
])
def test_envoy_order_picks_what_poolgate_picks(
    tmp_path: Path, method: str, path: str, headers: dict[str, str], query: dict[str, str],
) -> None:
    """Envoy takes the first route that matches: the merged order must agree with
    `Snapshot.route` for every request."""
    result = load(tmp_path, GATEWAY, PRECEDENCE)
    snapshot = result.snapshot
    assert snapshot is not None
    group = snapshot.tables[80].group("example.com")
    first = next(c for c in ordered_candidates(group)
                 if c.match.matches(method, path, headers, query))
    expected = snapshot.route(80, "example.com", method, path, headers, query)
    assert expected is not None
    assert first.decision.rule is expected.rule


def test_ordered_candidates_keep_every_candidate_once(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, PRECEDENCE)
    assert result.snapshot is not None
    group = result.snapshot.tables[80].default
    merged = ordered_candidates(group)
    assert len(merged) == len({id(c) for c in merged}) == 7
    for segment, listed in group.by_segment.items():
        # Each segment's order is kept.
        assert [c for c in merged if c.match.first_segment in (segment, None)] == list(listed)
    assert {first_segment(c.match.path) for c in merged if c.match.first_segment} == {
        "v1", "admin"}


def test_hostnames_become_virtual_hosts(tmp_path: Path) -> None:
    docs = [GATEWAY,
            route("exact", f"- backendRefs: [{ADDRESS}]", hostnames="[a.example.com]"),
            route("wild", f"- backendRefs: [{ADDRESS}]", hostnames='["*.example.com"]'),
            route("deeper", f"- backendRefs: [{ADDRESS}]", hostnames='["*.x.example.com"]'),
            route("any", f"- backendRefs: [{ADDRESS}]")]
    out = rendered(tmp_path, *docs)
    vhosts = hcm(out)["route_config"]["virtual_hosts"]
    assert [(v["name"], v["domains"]) for v in vhosts] == [
        ("80/a.example.com", ["a.example.com"]),
        ("80/*.x.example.com", ["*.x.example.com"]),
        ("80/*.example.com", ["*.example.com"]),
        ("80/*", ["*"]),
    ]


def test_filters_timeouts_and_rewrites(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"""
    - matches: [{{path: {{type: PathPrefix, value: /api/}}}}]
      filters:
      - type: RequestHeaderModifier
        requestHeaderModifier:
          set: [{{name: x-set, value: a}}]
          add: [{{name: x-add, value: b}}]
          remove: [x-gone]
      - type: URLRewrite
        urlRewrite: {{hostname: upstream.local, path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v1/}}}}
      timeouts: {{request: 30s, backendRequest: 10s}}
      backendRefs: [{ADDRESS}]
    - matches: [{{path: {{type: PathPrefix, value: /strip}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /}}}}}}]
      backendRefs: [{ADDRESS}]
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: /v2}}}}}}]
      backendRefs: [{ADDRESS}]
    - matches: [{{path: {{type: Exact, value: /full}}}}]
      filters: [{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: /other}}}}}}]
      backendRefs: [{ADDRESS}]
    """))
    by_name = {r["name"]: r for r in routes(out)}
    api = by_name["default/r/rule/0/match/0"]
    assert api["match"] == {"path_separated_prefix": "/api"}
    assert api["request_headers_to_add"] == [
        {"header": {"key": "x-set", "value": "a"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "b"}, "append_action": "APPEND_IF_EXISTS_OR_ADD"},
    ]
    assert api["request_headers_to_remove"] == ["x-gone"]
    action = api["route"]
    assert action["timeout"] == "30s"
    assert action["retry_policy"] == {"num_retries": 0, "per_try_timeout": "10s"}
    assert action["prefix_rewrite"] == "/v1"
    assert action["host_rewrite_literal"] == "upstream.local"
    assert action["append_x_forwarded_host"] is True
    assert by_name["default/r/rule/1/match/0"]["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/strip/*"}, "substitution": "/"}
    assert by_name["default/r/rule/2/match/0"]["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/"}, "substitution": "/v2/"}
    assert by_name["default/r/rule/3/match/0"]["route"]["regex_rewrite"] == {
        "pattern": {"regex": "^/.*$"}, "substitution": "/other"}


def test_weighted_backends_enable_ext_proc_for_the_pool_only(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, POOL, route("r", f"""
    - backendRefs:
      - {POOL_REF[:-1]}, weight: 3}}
      - {ADDRESS[:-1]}, weight: 1}}
      - {{group: poolgate.dev, kind: Address, name: 127.0.0.9, port: 1, weight: 0}}
    """))
    [r] = routes(out)
    clusters = r["route"]["weighted_clusters"]["clusters"]
    assert [(c["name"], c["weight"]) for c in clusters] == [
        ("httproute/default/r/rule/0/backend/0", 3), ("httproute/default/r/rule/0/backend/1", 1)]
    assert "envoy.filters.http.ext_proc" in clusters[0]["typed_per_filter_config"]
    assert "typed_per_filter_config" not in clusters[1]
    assert "typed_per_filter_config" not in r


def test_invalid_backends(tmp_path: Path) -> None:
    missing = "{group: inference.networking.x-k8s.io, kind: InferencePool, name: nope}"
    out = rendered(tmp_path, GATEWAY, route("r", f"""
    - matches: [{{path: {{type: PathPrefix, value: /only-invalid}}}}]
      backendRefs: [{missing}]
    - matches: [{{path: {{type: PathPrefix, value: /mixed}}}}]
      backendRefs: [{ADDRESS}, {missing}]
    """))
    by_name = {r["name"]: r for r in routes(out)}
    # As Envoy Gateway: no valid backendRef, 500.
    assert by_name["default/r/rule/0/match/0"]["direct_response"] == {"status": 500}
    clusters = by_name["default/r/rule/1/match/0"]["route"]["weighted_clusters"]["clusters"]
    assert [c["name"] for c in clusters] == ["httproute/default/r/rule/1/backend/0",
                                             "poolgate-invalid-backend"]
    assert any(e.subject == "HTTPRoute default/r rule 1" and "503" in e.why
               for e in out.untranslated)


def test_retry_policy(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"- backendRefs: [{ADDRESS}]"), """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: p}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  retry:
    numRetries: 3
    retryOn: {triggers: [connect-failure, reset], httpStatusCodes: [502, 503]}
    perRetry: {timeout: 2s, backOff: {baseInterval: 100ms, maxInterval: 1s}}
""")
    [r] = routes(out)
    assert r["route"]["retry_policy"] == {
        "retry_on": "connect-failure,reset,retriable-status-codes",
        "num_retries": 3,
        "retry_host_predicate": [{"name": "envoy.retry_host_predicates.previous_hosts",
                                  "typed_config": {"@type": "type.googleapis.com/envoy."
                                                   "extensions.retry.host.previous_hosts.v3."
                                                   "PreviousHostsPredicate"}}],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {"base_interval": "0.1s", "max_interval": "1s"},
        "retriable_status_codes": [502, 503],
        "per_try_timeout": "2s",
    }


def test_security_policy_fails_closed(tmp_path: Path) -> None:
    out = rendered(tmp_path, GATEWAY, route("r", f"- backendRefs: [{ADDRESS}]"), """
apiVersion: v1
kind: Secret
metadata: {name: keys}
stringData: {client-a: secret-a}
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: auth}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  apiKeyAuth:
    credentialRefs: [{name: keys}]
    extractFrom: [{headers: [x-api-key]}]
""")
    [r] = routes(out)
    assert "route" not in r
    assert r["direct_response"]["status"] == 403
    assert any(e.subject == "SecurityPolicy default/auth" for e in out.untranslated)

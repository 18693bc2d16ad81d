from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.config.snapshot import RouteDecision, Snapshot
from tests.unit.config.manifests import GATEWAY, POOL, load, messages, route

SVC = "backendRefs: [{group: poolgate.dev, kind: Address, name: 127.0.0.1, port: 1}]"


def snapshot(tmp_path: Path, *docs: str) -> Snapshot:
    result = load(tmp_path, GATEWAY, POOL, *docs)
    assert result.snapshot is not None, messages(result)
    return result.snapshot


def which(s: Snapshot, path: str, method: str = "GET", host: str = "example.com",
          headers: dict[str, str] | None = None, query: dict[str, str] | None = None,
          port: int = 80) -> str | None:
    d = s.route(port, host, method, path, headers or {}, query or {})
    return None if d is None else f"{d.route.name}/{d.rule.index}"


PRECEDENCE_ROUTES = (
    route("exact", f"""
        - matches: [{{path: {{type: Exact, value: /v1/models}}}}]
          {SVC}
    """),
    route("prefix", f"""
        - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
          {SVC}
        - matches: [{{path: {{type: PathPrefix, value: /v1/chat}}}}]
          {SVC}
        - matches: [{{path: {{type: PathPrefix, value: /v1/chat}}, method: POST}}]
          {SVC}
        - matches:
          - path: {{type: PathPrefix, value: /v1/chat}}
            method: POST
            headers: [{{name: x-tier, value: gold}}]
          {SVC}
        - matches:
          - path: {{type: PathPrefix, value: /v1/chat}}
            method: POST
            headers: [{{name: x-tier, value: gold}}]
            queryParams: [{{name: beta, value: "1"}}]
          {SVC}
    """),
    route("regex", f"""
        - matches: [{{path: {{type: RegularExpression, value: "/v1/embed.*"}}}}]
          {SVC}
    """),
    route("fallback", f"""
        - {SVC}
    """),
)


@pytest.mark.parametrize(
    ("path", "method", "headers", "query", "expected"),
    [
        pytest.param("/v1/models", "GET", {}, {}, "exact/0", id="exact-beats-prefix"),
        pytest.param("/v1/models/x", "GET", {}, {}, "prefix/0", id="exact-is-exact"),
        pytest.param("/v1/chat/completions", "GET", {}, {}, "prefix/1", id="longest-prefix"),
        pytest.param("/v1/chat/completions", "POST", {}, {}, "prefix/2", id="method-wins"),
        pytest.param("/v1/chat", "POST", {"x-tier": "gold"}, {}, "prefix/3", id="headers-win"),
        pytest.param("/v1/chat", "POST", {"x-tier": "gold"}, {"beta": "1"}, "prefix/4",
                     id="query-wins"),
        pytest.param("/v1/embeddings", "POST", {}, {}, "regex/0", id="regex-beats-prefix"),
        pytest.param("/v1x", "GET", {}, {}, "fallback/0", id="segment-boundary"),
        pytest.param("/health", "GET", {}, {}, "fallback/0", id="default-match-is-root-prefix"),
    ],
)
def test_precedence_across_routes_and_rules(
    tmp_path: Path, path: str, method: str, headers: dict[str, str], query: dict[str, str],
    expected: str,
) -> None:
    s = snapshot(tmp_path, *PRECEDENCE_ROUTES)
    assert which(s, path, method, headers=headers, query=query) == expected


def test_ties_go_to_the_older_route_then_rule_order(tmp_path: Path) -> None:
    s = snapshot(
        tmp_path,
        route("zeta", f"- {SVC}\n- {SVC}"),
        route("alpha", f"- {SVC}"),
    )
    # "zeta" is declared first (creation order stands in for creationTimestamp).
    assert which(s, "/x") == "zeta/0"


def test_creation_timestamp_orders_routes_before_file_order(tmp_path: Path) -> None:
    later = route("first-in-file", f"- {SVC}").replace(
        "metadata: {name: first-in-file}",
        "metadata: {name: first-in-file, creationTimestamp: '2025-02-01T00:00:00Z'}")
    earlier = route("second-in-file", f"- {SVC}").replace(
        "metadata: {name: second-in-file}",
        "metadata: {name: second-in-file, creationTimestamp: '2025-01-01T00:00:00Z'}")
    assert which(snapshot(tmp_path, later, earlier), "/") == "second-in-file/0"


HOST_ROUTES = (
    route("exact-host", f"- {SVC}", hostnames="[foo.example.com]"),
    route("wild", f"- {SVC}", hostnames='["*.example.com"]'),
    route("deeper-wild", f"- {SVC}", hostnames='["*.eu.example.com"]'),
    route("any", f"- matches: [{{path: {{type: PathPrefix, value: /open}}}}]\n  {SVC}"),
)


@pytest.mark.parametrize(
    ("host", "path", "expected"),
    [
        pytest.param("foo.example.com", "/", "exact-host/0", id="exact"),
        pytest.param("FOO.example.com:8080", "/", "exact-host/0", id="case-and-port"),
        pytest.param("bar.example.com", "/", "wild/0", id="wildcard"),
        pytest.param("a.b.example.com", "/", "wild/0", id="wildcard-many-labels"),
        pytest.param("x.eu.example.com", "/", "deeper-wild/0", id="longest-wildcard"),
        pytest.param("example.com", "/open", "any/0", id="apex-falls-to-catch-all"),
        pytest.param("example.com", "/", None, id="catch-all-path-miss"),
        pytest.param("other.org", "/open", "any/0", id="unlisted-host"),
        # Like Envoy virtual hosts: once a hostname group is chosen, no fallback to others.
        pytest.param("foo.example.com", "/open", "exact-host/0", id="group-chosen-first"),
    ],
)
def test_hostname_selection(tmp_path: Path, host: str, path: str, expected: str | None) -> None:
    assert which(snapshot(tmp_path, *HOST_ROUTES), path, host=host) == expected


def test_unknown_port_has_no_route(tmp_path: Path) -> None:
    s = snapshot(tmp_path, route("r", f"- {SVC}"))
    assert which(s, "/", port=81) is None
    assert which(s, "/", port=80) == "r/0"


LISTENERS = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: multi}
spec:
  gatewayClassName: c
  listeners:
  - {name: public, port: 8080, protocol: HTTP, hostname: "*.example.com"}
  - {name: internal, port: 9090, protocol: HTTP, hostname: internal.example.com}
  - {name: tls, port: 443, protocol: HTTPS}
"""


def test_listener_hostname_intersects_route_hostnames(tmp_path: Path) -> None:
    result = load(tmp_path, POOL, LISTENERS,
                  route("r", f"- {SVC}", hostnames='["a.example.com", "b.other.org"]',
                        parent="{name: multi}"),
                  route("all", f"- {SVC}", parent="{name: multi, sectionName: internal}"))
    s = result.snapshot
    assert s is not None, messages(result)
    assert which(s, "/", host="a.example.com", port=8080) == "r/0"
    assert which(s, "/", host="b.other.org", port=8080) is None
    assert which(s, "/", host="zzz.example.com", port=8080) is None
    assert which(s, "/", host="internal.example.com", port=9090) == "all/0"
    assert which(s, "/", host="x.example.com", port=9090) is None
    assert [lst.port for lst in s.listeners] == [8080, 9090]
    assert "warning: listener tls: protocol HTTPS is not supported (HTTP only); it is not served" \
        in messages(result)
    r = next(r for r in s.routes if r.name == "r")
    assert r.hostnames == ("a.example.com",) and r.ports == (8080,)


def test_parent_ref_port_selects_listeners(tmp_path: Path) -> None:
    result = load(tmp_path, POOL, LISTENERS,
                  route("r", f"- {SVC}", parent="{name: multi, port: 9090}"))
    assert result.snapshot is not None
    assert which(result.snapshot, "/", host="internal.example.com", port=9090) == "r/0"
    assert which(result.snapshot, "/", host="a.example.com", port=8080) is None


def test_routes_from_other_namespaces_need_allowed_routes_all(tmp_path: Path) -> None:
    other = route("r", f"- {SVC}", parent="{name: gw, namespace: default}").replace(
        "metadata: {name: r}", "metadata: {name: r, namespace: team}")
    result = load(tmp_path, GATEWAY, POOL, other)
    assert result.snapshot is not None and result.snapshot.routes == ()
    assert any("only allows routes from namespace default" in m for m in messages(result))
    opened = GATEWAY.replace("protocol: HTTP}", "protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}")
    result = load(tmp_path, opened, POOL, other)
    assert result.snapshot is not None and which(result.snapshot, "/") == "r/0"


def test_matched_prefix_is_reported_for_prefix_matches(tmp_path: Path) -> None:
    s = snapshot(tmp_path, route("r", f"""
        - matches: [{{path: {{type: PathPrefix, value: /api/}}}}, {{path: {{type: Exact, value: /x}}}}]
          {SVC}
    """))
    d = s.route(80, "h", "GET", "/api/v1", {}, {})
    assert isinstance(d, RouteDecision) and d.matched_prefix == "/api"
    exact = s.route(80, "h", "GET", "/x", {}, {})
    assert exact is not None and exact.matched_prefix is None


def test_port_overrides_move_listeners(tmp_path: Path) -> None:
    from poolgate.config.build import load_snapshot

    path = tmp_path / "m.yaml"
    path.write_text(GATEWAY + "---\n" + route("r", f"- {SVC}"))
    s = load_snapshot([path], port_overrides={80: 18080}).snapshot
    assert s is not None
    assert s.listener_ports() == (18080,)
    assert which(s, "/", port=18080) == "r/0"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        pytest.param("/", "r/0", id="exact-root"),
        pytest.param("/v1", "r/1", id="segment-bucket"),
        pytest.param("/v1/anything", "r/2", id="regex-in-every-bucket"),
        pytest.param("/v2", "r/3", id="unknown-segment-uses-root-prefix"),
        pytest.param("*", "r/3", id="asterisk-form"),
    ],
)
def test_first_segment_index_keeps_precedence(tmp_path: Path, path: str, expected: str) -> None:
    s = snapshot(tmp_path, route("r", f"""
        - matches: [{{path: {{type: Exact, value: /}}}}]
          {SVC}
        - matches: [{{path: {{type: Exact, value: /v1}}}}]
          {SVC}
        - matches: [{{path: {{type: RegularExpression, value: "/v1/.*"}}}}]
          {SVC}
        - {SVC}
        - matches: [{{path: {{type: PathPrefix, value: /v1}}}}]
          {SVC}
    """))
    assert which(s, path) == expected

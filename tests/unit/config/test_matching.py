from __future__ import annotations

import re

import pytest

from poolgate.config.matching import (
    RouteMatch,
    ValueMatch,
    hostname_matches,
    intersect_hostnames,
    normalize_host,
)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        pytest.param("Example.COM", "example.com", id="case"),
        pytest.param("example.com:8080", "example.com", id="port"),
        pytest.param("example.com.", "example.com", id="trailing-dot"),
        pytest.param("[::1]:80", "[::1]", id="ipv6-port"),
        pytest.param("127.0.0.1:80", "127.0.0.1", id="ipv4-port"),
    ],
)
def test_normalize_host(raw: str, normalized: str) -> None:
    assert normalize_host(raw) == normalized


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        pytest.param("example.com", "example.com", True, id="exact"),
        pytest.param("example.com", "www.example.com", False, id="exact-no-subdomain"),
        pytest.param("*.example.com", "foo.example.com", True, id="wildcard-one-label"),
        pytest.param("*.example.com", "a.b.example.com", True, id="wildcard-many-labels"),
        pytest.param("*.example.com", "example.com", False, id="wildcard-needs-a-label"),
        pytest.param("*.example.com", "fooexample.com", False, id="wildcard-label-boundary"),
    ],
)
def test_hostname_matches(pattern: str, host: str, expected: bool) -> None:
    assert hostname_matches(pattern, host) is expected


@pytest.mark.parametrize(
    ("listener", "route", "expected"),
    [
        pytest.param(None, "a.example.com", "a.example.com", id="no-listener-hostname"),
        pytest.param("a.example.com", "a.example.com", "a.example.com", id="same"),
        pytest.param("*.example.com", "a.example.com", "a.example.com", id="listener-wildcard"),
        pytest.param("a.example.com", "*.example.com", "a.example.com", id="route-wildcard"),
        pytest.param("*.example.com", "*.a.example.com", "*.a.example.com", id="nested-wildcards"),
        pytest.param("*.a.example.com", "*.example.com", "*.a.example.com", id="nested-reverse"),
        pytest.param("a.example.com", "b.example.com", None, id="disjoint"),
        pytest.param("*.example.com", "example.com", None, id="wildcard-excludes-apex"),
        pytest.param("*.example.com", "*.example.org", None, id="disjoint-wildcards"),
    ],
)
def test_intersect_hostnames(listener: str | None, route: str, expected: str | None) -> None:
    assert intersect_hostnames(listener, route) == expected


def match(m: RouteMatch, path: str, method: str = "GET", headers: dict[str, str] | None = None,
          query: dict[str, str] | None = None) -> bool:
    return m.matches(method, path, headers or {}, query or {})


@pytest.mark.parametrize(
    ("prefix", "path", "expected"),
    [
        pytest.param("/v1", "/v1", True, id="equal"),
        pytest.param("/v1", "/v1/x", True, id="segment"),
        pytest.param("/v1", "/v1x", False, id="not-a-segment"),
        pytest.param("/v1/", "/v1", True, id="trailing-slash-ignored"),
        pytest.param("/v1/", "/v1/chat", True, id="trailing-slash-segment"),
        pytest.param("/", "/anything", True, id="root"),
        pytest.param("/v1", "/v2", False, id="other"),
        pytest.param("/v1", "/V1", False, id="case-sensitive"),
    ],
)
def test_path_prefix_matches_whole_segments(prefix: str, path: str, expected: bool) -> None:
    assert match(RouteMatch.build("PathPrefix", prefix), path) is expected


def test_exact_and_regex_paths() -> None:
    exact = RouteMatch.build("Exact", "/v1/models")
    assert match(exact, "/v1/models") and not match(exact, "/v1/models/x")
    regex = RouteMatch.build("RegularExpression", r"/v1/(chat/)?completions")
    assert match(regex, "/v1/chat/completions") and match(regex, "/v1/completions")
    assert not match(regex, "/v1/completions/extra")  # full match, as Envoy's safe_regex


def test_method_headers_and_query_all_must_hold() -> None:
    m = RouteMatch.build(
        "PathPrefix", "/", "POST",
        headers=(ValueMatch("X-Team", "a"), ValueMatch("x-tier", "", re.compile("gold|silver"))),
        query=(ValueMatch("debug", "1"),),
    )
    ok = {"x-team": "a", "x-tier": "gold"}
    assert match(m, "/", "POST", ok, {"debug": "1"})
    assert not match(m, "/", "GET", ok, {"debug": "1"})
    assert not match(m, "/", "POST", {"x-team": "a", "x-tier": "bronze"}, {"debug": "1"})
    assert not match(m, "/", "POST", {"x-tier": "gold"}, {"debug": "1"})
    assert not match(m, "/", "POST", ok, {})


def test_precedence_orders_by_specificity() -> None:
    ordered = [
        RouteMatch.build("Exact", "/a"),
        RouteMatch.build("RegularExpression", "/a/.*"),
        RouteMatch.build("PathPrefix", "/a/b"),
        RouteMatch.build("PathPrefix", "/a", "GET"),
        RouteMatch.build("PathPrefix", "/a", headers=(ValueMatch("h", "1"), ValueMatch("i", "2"))),
        RouteMatch.build("PathPrefix", "/a", headers=(ValueMatch("h", "1"),)),
        RouteMatch.build("PathPrefix", "/a", query=(ValueMatch("q", "1"),)),
        RouteMatch.build("PathPrefix", "/a"),
        RouteMatch.build("PathPrefix", "/"),
    ]
    assert sorted(ordered, key=RouteMatch.precedence) == ordered

from __future__ import annotations

import pytest

from poolgate.config.filters import apply_request_filters, modify_headers, rewrite_prefix
from poolgate.config.matching import RouteMatch
from poolgate.config.snapshot import (
    HeaderModifier,
    Route,
    RouteDecision,
    RouteRule,
    URLRewrite,
)


@pytest.mark.parametrize(
    ("prefix", "path", "replacement", "expected"),
    [
        pytest.param("/foo", "/foo/bar", "/xyz", "/xyz/bar", id="segment"),
        pytest.param("/foo", "/foo/bar", "/xyz/", "/xyz/bar", id="replacement-trailing-slash"),
        pytest.param("/foo", "/foo", "/xyz", "/xyz", id="whole-path"),
        pytest.param("/foo", "/foo/", "/xyz", "/xyz/", id="keeps-trailing-slash"),
        pytest.param("/foo", "/foo/bar", "/", "/bar", id="to-root"),
        pytest.param("/foo", "/foo", "/", "/", id="whole-path-to-root"),
        pytest.param("/foo", "/foo/", "", "/", id="empty-replacement"),
        pytest.param("/", "/foo", "/xyz", "/xyz/foo", id="from-root"),
        pytest.param("/", "/foo", "/xyz/", "/xyz/foo", id="from-root-trailing-slash"),
    ],
)
def test_replace_prefix_match_table(prefix: str, path: str, replacement: str, expected: str) -> None:
    # The Gateway API's HTTPPathModifier examples.
    assert rewrite_prefix(path, prefix, replacement) == expected


def test_header_modifier_sets_adds_and_removes_case_insensitively() -> None:
    modifier = HeaderModifier(
        set=(("X-Env", "prod"),), add=(("X-Tag", "b"), ("X-New", "n")), remove=("X-Secret",),
    )
    lines = [("x-env", "dev"), ("X-ENV", "dev2"), ("x-tag", "a"), ("x-secret", "s"),
             ("X-Secret", "t"), ("keep", "k")]
    out = modify_headers(modifier, lines)
    assert out == [("x-tag", "a"), ("keep", "k"), ("X-Env", "prod"), ("X-Tag", "b"), ("X-New", "n")]
    assert modify_headers(HeaderModifier(remove=("a",)), {"a": "1", "b": "2"}) == [("b", "2")]


def decision(rule: RouteRule, prefix: str | None) -> RouteDecision:
    return RouteDecision(Route("default", "r", (), (rule,), (80,)), rule, prefix)


def test_apply_request_filters_combines_rewrite_and_headers() -> None:
    rule = RouteRule(
        index=0, matches=(RouteMatch.build("PathPrefix", "/api"),), backends=(),
        header_modifier=HeaderModifier(set=(("x-a", "1"),)),
        url_rewrite=URLRewrite(hostname="backend.local", prefix_replacement="/v1"),
    )
    headers = [("Host", "example.com"), ("x-b", "2")]
    path, lines = apply_request_filters(rule, decision(rule, "/api"), "/api/chat?stream=1", headers)
    assert path == "/v1/chat?stream=1"
    assert lines == [("x-b", "2"), ("x-a", "1"), ("host", "backend.local"),
                     ("x-forwarded-host", "example.com")]
    assert headers == [("Host", "example.com"), ("x-b", "2")]  # the input is not modified


def test_full_path_rewrite_keeps_the_query_and_no_filters_change_nothing() -> None:
    full = RouteRule(0, (RouteMatch.build(),), (), url_rewrite=URLRewrite(full_path="/v1/completions"))
    out = apply_request_filters(full, decision(full, "/"), "/anything?a=b", {})
    assert out.path == "/v1/completions?a=b"
    plain = RouteRule(0, (RouteMatch.build(),), ())
    out = apply_request_filters(plain, decision(plain, "/"), "/x", {"a": "b"})
    assert (out.path, out.headers) == ("/x", [("a", "b")])

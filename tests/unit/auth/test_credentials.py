"""Reading credentials out of a request as Envoy's api_key_auth and jwt_authn filters do, and
taking them out again (sanitize) or hiding them (logs)."""

from __future__ import annotations

import pytest

from poolgate.auth.credentials import (
    api_key,
    jwt_tokens,
    redact_params,
    without_cookies,
    without_params,
)
from poolgate.auth.spec import DEFAULT_JWT_SOURCES, KeySource, SourceKind
from tests.unit.auth._keys import request

HEADER = KeySource(SourceKind.HEADER, "authorization")
X_API_KEY = KeySource(SourceKind.HEADER, "x-api-key")
PARAM = KeySource(SourceKind.PARAM, "key")
COOKIE = KeySource(SourceKind.COOKIE, "session")


@pytest.mark.parametrize(
    ("lines", "path", "sources", "expected"),
    [
        pytest.param([("Authorization", "Bearer sk-1")], "/", [HEADER], "sk-1",
                     id="bearer-stripped"),
        pytest.param([("authorization", "sk-1")], "/", [HEADER], "sk-1", id="bare-header"),
        pytest.param([("authorization", "bearer sk-1")], "/", [HEADER], "bearer sk-1",
                     id="prefix-is-case-sensitive"),
        pytest.param([("x-api-key", "Bearer sk-2")], "/", [X_API_KEY], "sk-2",
                     id="bearer-stripped-from-any-header"),
        pytest.param([("x-api-key", "first"), ("x-api-key", "second")], "/", [X_API_KEY], "first",
                     id="first-header-line"),
        pytest.param([], "/v1?key=a%2Fb+c&key=other", [PARAM], "a/b+c", id="param-decoded"),
        pytest.param([("cookie", 'a=1; session="s3"')], "/", [COOKIE], "s3", id="cookie-unquoted"),
        pytest.param([("authorization", "")], "/?key=p", [HEADER, PARAM], "p",
                     id="empty-source-skipped"),
        pytest.param([("x-api-key", "h")], "/?key=p", [PARAM, X_API_KEY], "p",
                     id="sources-in-order"),
        pytest.param([], "/v1/completions", [HEADER, PARAM, COOKIE], "", id="missing"),
    ],
)
def test_api_key_extraction(lines: list[tuple[str, str]], path: str, sources: list[KeySource],
                            expected: str) -> None:
    assert api_key(request(*lines, path=path), sources) == expected


def test_jwt_tokens_by_default_come_from_bearer_and_access_token() -> None:
    req = request(("authorization", "Bearer aaa.bbb.ccc"), path="/v1?access_token=ddd.eee.fff")
    assert jwt_tokens(req, DEFAULT_JWT_SOURCES) == ["aaa.bbb.ccc", "ddd.eee.fff"]


def test_jwt_header_without_its_prefix_is_not_a_token() -> None:
    assert jwt_tokens(request(("authorization", "Basic dXNlcjpwdw==")), DEFAULT_JWT_SOURCES) == []


def test_jwt_from_a_custom_header_prefix_and_cookie() -> None:
    sources = [KeySource(SourceKind.HEADER, "x-token", "JWT "), KeySource(SourceKind.COOKIE, "t")]
    req = request(("x-token", "JWT   a.b.c"), ("cookie", "t=d.e.f"))
    assert jwt_tokens(req, sources) == ["a.b.c", "d.e.f"]


def test_without_params_removes_only_the_named_parameter() -> None:
    assert without_params("/v1?key=s&x=1&key=t", ["key"]) == "/v1?x=1"
    assert without_params("/v1?key=s", ["key"]) == "/v1"
    assert without_params("/v1", ["key"]) == "/v1"


def test_without_cookies_keeps_the_others_and_drops_an_empty_line() -> None:
    lines = [("Cookie", "a=1; session=s; b=2"), ("cookie", "session=t"), ("x", "y")]
    assert without_cookies(lines, ["session"]) == [("Cookie", "a=1; b=2"), ("x", "y")]


def test_redact_params_hides_credential_values() -> None:
    assert redact_params("/v1?key=s3cret&x=1", ["key"]) == "/v1?key=REDACTED&x=1"
    assert redact_params("/v1", ["key"]) == "/v1"

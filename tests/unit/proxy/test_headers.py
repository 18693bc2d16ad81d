"""The headers a request sends upstream and a response sends back (hop-by-hop fields, what only a
proxy may set), whatever the spelling of their names."""

from __future__ import annotations

import pytest

from poolgate.http.server import RequestHeaders
from poolgate.proxy import headers as module
from poolgate.proxy.headers import downstream_response_headers, upstream_request_headers


def request(*lines: tuple[str, str]) -> RequestHeaders:
    first: dict[str, str] = {}
    for name, value in lines:
        first.setdefault(name.lower(), value)
    return RequestHeaders(list(lines), first)


def upstream(*lines: tuple[str, str], client: str = "192.0.2.7") -> list[tuple[str, str]]:
    headers = request(*lines)
    return upstream_request_headers(headers.raw, headers, client)


@pytest.mark.parametrize("spelling", ["x-envoy-retry-on", "X-Envoy-Retry-On", "X-ENVOY-RETRY-ON"])
def test_what_only_a_proxy_may_set_is_dropped_however_spelled(spelling: str) -> None:
    assert upstream(("Host", "gw"), (spelling, "5xx"), ("X-Gateway-Destination-Endpoint", "x"),
                    ("X-Forwarded-Host", "evil"), ("x-forwarded-proto", "https"),
                    ("Transfer-Encoding", "chunked"), ("Content-Length", "5"),
                    ("Expect", "100-continue"), ("Keep-Alive", "5")) == [
        ("Host", "gw"), ("x-forwarded-for", "192.0.2.7"), ("x-forwarded-proto", "http")]


def test_the_client_address_is_appended_to_every_forwarded_for_field_in_order() -> None:
    assert upstream(("X-Forwarded-For", "10.0.0.1"), ("A", "1"),
                    ("x-forwarded-for", "10.0.0.2, 10.0.0.3")) == [
        ("A", "1"), ("x-forwarded-for", "10.0.0.1, 10.0.0.2, 10.0.0.3, 192.0.2.7"),
        ("x-forwarded-proto", "http")]
    assert upstream(("A", "1"), client="") == [("A", "1"), ("x-forwarded-proto", "http")]


def test_names_the_connection_field_lists_are_dropped_and_repeats_kept() -> None:
    assert upstream(("Connection", "X-Trace, keep-alive"), ("x-trace", "1"), ("X-Other", "a"),
                    ("X-Other", "b")) == [
        ("X-Other", "a"), ("X-Other", "b"), ("x-forwarded-for", "192.0.2.7"),
        ("x-forwarded-proto", "http")]
    # the next request, with the same names but no Connection field, keeps them
    assert upstream(("x-trace", "1"))[0] == ("x-trace", "1")


def test_response_headers_lose_hop_by_hop_recomputed_and_connection_listed_fields() -> None:
    lines = [("Content-Type", "application/json"), ("Content-Length", "5"), ("date", "d"),
             ("Server", "uvicorn"), ("Transfer-Encoding", "chunked"), ("X-Request-Id", "r"),
             ("Connection", "x-request-id"), ("x-other", "o")]
    assert downstream_response_headers(lines) == [
        ("Content-Type", "application/json"), ("X-Request-Id", "r"), ("x-other", "o")]
    assert downstream_response_headers(lines, "X-Request-Id, close") == [
        ("Content-Type", "application/json"), ("x-other", "o")]


def test_names_are_remembered_up_to_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(module, "_request_kinds", {})
    monkeypatch.setattr(module, "_MAX_KNOWN_NAMES", 3)
    sent = upstream(*[(f"X-Made-Up-{n}", str(n)) for n in range(10)], ("X-Envoy-Force", "1"))
    assert [name for name, _ in sent] == [
        *(f"X-Made-Up-{n}" for n in range(10)), "x-forwarded-for", "x-forwarded-proto"]
    assert len(module._request_kinds) == 3

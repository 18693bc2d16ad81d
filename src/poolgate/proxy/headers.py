"""Header hygiene for a proxy: hop-by-hop removal and headers clients may not set."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

# RFC 9110 §7.6.1 connection-specific fields, plus the ones a relay must recompute itself.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
})
_RECOMPUTED_REQUEST = frozenset({"content-length", "expect"})
_RECOMPUTED_RESPONSE = frozenset({"content-length", "date", "server"})

# The endpoint-picker protocol's routing headers: only the gateway may set them, so that a client
# can never choose an arbitrary destination.
DESTINATION_PREFIX = "x-gateway-destination-endpoint"


def _connection_tokens(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("connection") or headers.get("Connection")
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


def upstream_request_headers(items: Iterable[tuple[str, str]], connection: Mapping[str, str],
                             client_address: str = "") -> list[tuple[str, str]]:
    """The client's headers as they go upstream (a list: repeated headers are kept).

    As Envoy at the edge (Envoy Gateway's default, `use_remote_address`): the client's address
    is appended to `x-forwarded-for`, `x-forwarded-proto` states the listener's scheme, and
    what only a proxy may assert is dropped: `x-envoy-*`, `x-forwarded-host` (set again only
    when a URLRewrite changes the host), `x-forwarded-proto`, and the endpoint-picker's
    destination headers.
    """
    extra = _connection_tokens(connection)
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    for name, value in items:
        low = name.lower()
        if low in HOP_BY_HOP or low in _RECOMPUTED_REQUEST or low in extra:
            continue
        if low.startswith(("x-envoy-", "x-forwarded-", DESTINATION_PREFIX)):
            if low == "x-forwarded-for":
                forwarded_for.append(value)
            continue
        out.append((name, value))
    if client_address:
        forwarded_for.append(client_address)
    if forwarded_for:
        out.append(("x-forwarded-for", ", ".join(forwarded_for)))
    out.append(("x-forwarded-proto", "http"))
    return out


def downstream_response_headers(items: Iterable[tuple[str, str]], connection: Mapping[str, str]) -> list[tuple[str, str]]:
    """The upstream response's headers as they go back to the client."""
    extra = _connection_tokens(connection)
    return [
        (name, value) for name, value in items
        if (low := name.lower()) not in HOP_BY_HOP and low not in _RECOMPUTED_RESPONSE
        and low not in extra
    ]

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


def _connection_tokens(value: str | None) -> frozenset[str]:
    """The header names a `Connection` field's value lists (lower case)."""
    if not value:
        return frozenset()
    return frozenset(t.strip().lower() for t in value.split(",") if t.strip())


# How a request header is treated on its way upstream, by its name as received: the same names
# (in the same spelling) come with every request, so each is classified once, not lowered and
# compared per request. Bounded, so that clients making up names cannot grow it without end.
_FORWARD, _DROP, _FORWARDED_FOR = 0, 1, 2
_MAX_KNOWN_NAMES = 4096
_request_kinds: dict[str, int] = {}
_response_kinds: dict[str, int] = {}


def _request_kind(name: str) -> int:
    kind = _request_kinds.get(name)
    if kind is not None:
        return kind
    low = name.lower()
    if low in HOP_BY_HOP or low in _RECOMPUTED_REQUEST:
        kind = _DROP
    elif low.startswith(("x-envoy-", "x-forwarded-", DESTINATION_PREFIX)):
        kind = _FORWARDED_FOR if low == "x-forwarded-for" else _DROP
    else:
        kind = _FORWARD
    if len(_request_kinds) < _MAX_KNOWN_NAMES:
        _request_kinds[name] = kind
    return kind


def _response_kind(name: str) -> int:
    kind = _response_kinds.get(name)
    if kind is not None:
        return kind
    low = name.lower()
    kind = _DROP if low in HOP_BY_HOP or low in _RECOMPUTED_RESPONSE else _FORWARD
    if len(_response_kinds) < _MAX_KNOWN_NAMES:
        _response_kinds[name] = kind
    return kind


def upstream_request_headers(items: Iterable[tuple[str, str]], connection: Mapping[str, str],
                             client_address: str = "") -> list[tuple[str, str]]:
    """The client's headers as they go upstream (a list: repeated headers are kept).

    As Envoy at the edge (Envoy Gateway's default, `use_remote_address`): the client's address
    is appended to `x-forwarded-for`, `x-forwarded-proto` states the listener's scheme, and
    what only a proxy may assert is dropped: `x-envoy-*`, `x-forwarded-host` (set again only
    when a URLRewrite changes the host), `x-forwarded-proto`, and the endpoint-picker's
    destination headers; so are the hop-by-hop fields and those `connection` (the request's
    headers, looked up by lower-case name) lists.
    """
    listed = connection.get("connection") or connection.get("Connection")
    extra = _connection_tokens(listed) if listed else None
    out: list[tuple[str, str]] = []
    forwarded_for: list[str] = []
    kinds = _request_kinds
    for name, value in items:
        kind = kinds.get(name)
        if kind is None:
            kind = _request_kind(name)
        if kind == _FORWARD:
            if extra is None or name.lower() not in extra:
                out.append((name, value))
        elif kind == _FORWARDED_FOR:
            forwarded_for.append(value)
    if client_address:
        forwarded_for.append(client_address)
    if forwarded_for:
        out.append(("x-forwarded-for", ", ".join(forwarded_for)))
    out.append(("x-forwarded-proto", "http"))
    return out


def downstream_response_headers(items: Iterable[tuple[str, str]],
                                connection: str | None = None) -> list[tuple[str, str]]:
    """The upstream response's headers as they go back to the client; `connection`: the
    value of its `Connection` field, if any (the names it lists are dropped too)."""
    kinds = _response_kinds
    if connection:
        extra = _connection_tokens(connection)
        return [(name, value) for name, value in items
                if _response_kind(name) == _FORWARD and name.lower() not in extra]
    out: list[tuple[str, str]] = []
    for name, value in items:
        kind = kinds.get(name)
        if kind is None:
            kind = _response_kind(name)
        if kind == _FORWARD:
            out.append((name, value))
    return out

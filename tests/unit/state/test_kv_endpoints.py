"""KV_ENDPOINTS parsing and the rendezvous choice of the node that owns a key."""

from __future__ import annotations

import pytest

from poolgate.state.kv_endpoints import (
    KVEndpoint,
    owner_node,
    parse_kv_endpoint,
    parse_kv_endpoints,
)


def test_blanks_and_whitespace_are_dropped() -> None:
    assert parse_kv_endpoints(" redis-0:6379, ,redis-1.kv.svc:6380,,") == (
        KVEndpoint("redis-0", 6379), KVEndpoint("redis-1.kv.svc", 6380),
    )
    assert parse_kv_endpoints("") == ()
    assert parse_kv_endpoints(" , ") == ()


def test_ipv6_in_brackets() -> None:
    ep = parse_kv_endpoint("[::1]:6379")
    assert ep == KVEndpoint("::1", 6379)
    assert str(ep) == "[::1]:6379"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        pytest.param("redis", "missing ':port'", id="no-port"),
        pytest.param(":6379", "empty host", id="no-host"),
        pytest.param("redis:0", "1-65535", id="port-zero"),
        pytest.param("redis:65536", "1-65535", id="port-too-big"),
        pytest.param("redis:abc", "1-65535", id="port-not-a-number"),
        pytest.param("red is:6379", "invalid host", id="space"),
        pytest.param("::1:6379", "[addr]:port", id="bare-ipv6"),
        pytest.param("[::1]6379", "[addr]:port", id="bad-brackets"),
        pytest.param("redis://r:6379", "URL scheme", id="url"),
    ],
)
def test_invalid_endpoints_are_explained(text: str, fragment: str) -> None:
    with pytest.raises(ValueError, match=r"is not host:port") as info:
        parse_kv_endpoint(text)
    assert fragment in str(info.value)


def test_owner_is_the_same_whatever_the_order() -> None:
    eps = [KVEndpoint(f"redis-{i}", 6379) for i in range(4)]
    owners = {owner_node(order, "poolgate:router:llama") for order in (eps, eps[::-1], eps[1:] + eps[:1])}
    assert len(owners) == 1


def test_keys_spread_over_nodes_and_adding_a_node_moves_only_its_own_keys() -> None:
    eps = [KVEndpoint(f"redis-{i}", 6379) for i in range(3)]
    keys = [f"model-{i}" for i in range(300)]
    before = {k: owner_node(eps, k) for k in keys}
    assert len(set(before.values())) == 3
    new = KVEndpoint("redis-3", 6379)
    after = {k: owner_node([*eps, new], k) for k in keys}
    assert all(after[k] in (before[k], new) for k in keys)


def test_owner_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        owner_node([], "k")

"""KV_ENDPOINTS: parsing `host:port` lists and choosing the node that owns a key."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class KVEndpoint:
    """One Redis node."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_kv_endpoint(text: str) -> KVEndpoint:
    """Parse `host:port` or `[v6addr]:port`; raises ValueError saying what is wrong."""
    if "://" in text:
        raise ValueError(f"{text!r} is not host:port (give the address without a URL scheme)")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not rest.startswith(":"):
            raise ValueError(f"{text!r} is not host:port (IPv6 form is [addr]:port)")
        port_text = rest[1:]
    else:
        host, sep, port_text = text.rpartition(":")
        if not sep:
            raise ValueError(f"{text!r} is not host:port (missing ':port')")
        if ":" in host:
            raise ValueError(f"{text!r} is not host:port (write IPv6 addresses as [addr]:port)")
    if not host:
        raise ValueError(f"{text!r} is not host:port (empty host)")
    if any(c.isspace() or c in "/@?#" for c in host):
        raise ValueError(f"{text!r} is not host:port (invalid host {host!r})")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r} is not host:port (port must be 1-65535)")
    return KVEndpoint(host, int(port_text))


def parse_kv_endpoints(raw: str) -> tuple[KVEndpoint, ...]:
    """Parse a comma-separated list; whitespace around items and empty items are dropped."""
    items = [item.strip() for item in raw.split(",")]
    return tuple(parse_kv_endpoint(item) for item in items if item)


def owner_node(endpoints: Sequence[KVEndpoint], key: str) -> KVEndpoint:
    """The node that owns `key`, by rendezvous (highest-random-weight) hashing.

    Every replica given the same set of endpoints (in any order) picks the same node, so a
    limit kept under one key is counted in exactly one place; adding a node moves only the keys
    that the new node wins.
    """
    if not endpoints:
        raise ValueError("no KV endpoints")

    def weight(ep: KVEndpoint) -> bytes:
        return hashlib.blake2b(f"{ep}\x00{key}".encode(), digest_size=8).digest()

    return max(endpoints, key=weight)

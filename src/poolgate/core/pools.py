"""What a pool is: its endpoints (model servers) and how they are addressed.

Leaf types: every layer (discovery, datalayer, scheduling, balancing, config, proxy) reads them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

FailureMode = Literal["FailOpen", "FailClose"]
Criticality = Literal["Critical", "Standard", "Sheddable"]
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One model server; `address` ("host:port") keys all per-endpoint live state."""

    host: str
    port: int
    labels: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    cluster: str | None = None
    region: str | None = None

    def __hash__(self) -> int:
        return hash((self.host, self.port))

    @property
    def address(self) -> str:
        """`host:port` (`[v6]:port` for IPv6)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class Pool:
    """An InferencePool with its endpoints resolved."""

    namespace: str
    name: str
    target_port: int
    selector: Mapping[str, str]
    endpoints: tuple[Endpoint, ...]
    failure_mode: FailureMode = "FailClose"
    picker_ref: str | None = None
    annotations: Mapping[str, str] = field(default_factory=lambda: _EMPTY)
    addresses: tuple[str, ...] = ()  # the endpoints' `host:port`, in order (filled when built)
    # Exported for multi-cluster import (annotation networking.gke.io/export or
    # inference.networking.x-k8s.io/export "true" on at least one declaration).
    exported: bool = False

    def __post_init__(self) -> None:
        if not self.addresses and self.endpoints:
            object.__setattr__(self, "addresses", tuple(ep.address for ep in self.endpoints))

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"

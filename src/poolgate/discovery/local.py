"""Endpoints declared in `LocalEndpoints` resources (poolgate outside a cluster)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from poolgate.api.local import LocalEndpoints, parse_address
from poolgate.core.pools import Endpoint

SERVICE_LABEL = "poolgate.dev/service"


@dataclass(frozen=True, slots=True)
class DeclaredAddress:
    """One declared address with the labels and placement it is matched and tagged with."""

    namespace: str
    host: str
    port: int | None
    labels: Mapping[str, str]
    cluster: str | None
    region: str | None


def declared_addresses(resource: LocalEndpoints) -> tuple[DeclaredAddress, ...]:
    """The addresses of one LocalEndpoints; per-address labels and placement override the spec's."""
    spec = resource.spec
    out = []
    for item in spec.addresses:
        host, port = parse_address(item.address)
        labels = MappingProxyType({**spec.labels, **item.labels})
        out.append(DeclaredAddress(
            resource.namespace, host, port, labels, item.cluster or spec.cluster, item.region or spec.region,
        ))
    return tuple(out)


def selector_matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Kubernetes `matchLabels` semantics: every selector label present with an equal value."""
    return all(labels.get(k) == v for k, v in selector.items())


class LocalEndpointSource:
    """An EndpointSource answering from LocalEndpoints declarations, in declaration order."""

    def __init__(self, declarations: Iterable[LocalEndpoints]) -> None:
        self._addresses: tuple[DeclaredAddress, ...] = tuple(
            a for d in declarations for a in declared_addresses(d)
        )

    def endpoints_for(
        self, namespace: str, selector: Mapping[str, str], target_port: int
    ) -> tuple[Endpoint, ...]:
        """Endpoints in `namespace` matching `selector`; an address without a port gets `target_port`."""
        seen: dict[tuple[str, int], Endpoint] = {}
        for a in self._addresses:
            if a.namespace != namespace or not selector_matches(selector, a.labels):
                continue
            port = a.port if a.port is not None else target_port
            seen.setdefault((a.host, port), Endpoint(a.host, port, a.labels, a.cluster, a.region))
        return tuple(seen.values())

    def service_addresses(self, namespace: str, name: str) -> tuple[DeclaredAddress, ...]:
        """Addresses labelled `poolgate.dev/service: NAME` (a core Service backendRef, locally)."""
        return tuple(
            a for a in self._addresses
            if a.namespace == namespace and a.labels.get(SERVICE_LABEL) == name
        )

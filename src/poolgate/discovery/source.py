"""Where a pool's endpoints come from: the protocol every endpoint source implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from poolgate.core.pools import Endpoint


class EndpointSource(Protocol):
    """Finds the endpoints behind a label selector.

    A local declaration (`LocalEndpointSource`) answers from manifests; a Kubernetes watcher
    would answer from Ready pods. Implementations are read-only during a snapshot build.
    """

    def endpoints_for(
        self, namespace: str, selector: Mapping[str, str], target_port: int
    ) -> tuple[Endpoint, ...]:
        """Endpoints in `namespace` whose labels include every selector label, in a stable order,
        without duplicate addresses; `target_port` applies to addresses that carry no port.
        May be empty."""
        ...

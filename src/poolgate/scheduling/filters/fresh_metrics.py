"""`fresh-metrics-filter`: prefer endpoints whose metrics are known and fresh.

What it does: drops endpoints whose signals are unknown (never scraped, or older than the
staleness bound) when at least one candidate has fresh signals. When none has, it keeps every
candidate (fail open: the load scorers then see no data and the gateway-side in-flight count
still spreads the load), unless `requireFresh` is set, in which case the result is empty and the
pick fails with `NoEndpointAvailable`.
Intent: never send traffic blind to a server whose `/metrics` stopped answering while others
are observable.
Inputs: `Endpoint.signals` (None = unknown).
Configuration: `requireFresh` (bool, default false).
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling.filters.params import FreshMetricsParams
from poolgate.scheduling.interfaces import (
    BuildContext,
    CycleState,
    Endpoint,
    Filter,
    LLMRequest,
    TypedName,
)

TYPE = "fresh-metrics-filter"
# The registry reads every plugin module's `Params` (the model lives in a plain module).
Params = FreshMetricsParams


class FreshMetricsFilter:
    """Keeps endpoints with fresh metrics when there are any."""

    def __init__(self, name: str = TYPE, params: FreshMetricsParams | None = None) -> None:
        self.typed_name = TypedName(TYPE, name)
        self.require_fresh = (params or FreshMetricsParams()).require_fresh

    def filter(self, req: LLMRequest, endpoints: Sequence[Endpoint],
               cycle: CycleState) -> Sequence[Endpoint]:
        known = [e for e in endpoints if e.signals is not None]
        if known or self.require_fresh:
            return known
        return endpoints


def create(name: str, params: FreshMetricsParams, ctx: BuildContext) -> Filter:
    """Factory for the registry."""
    return FreshMetricsFilter(name, params)

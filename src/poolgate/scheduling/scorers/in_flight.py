"""`in-flight-scorer`: prefer endpoints with fewer of the gateway's own requests in flight.

What it does: `score = (f_max - f) / (f_max - f_min)` over the gateway in-flight counts f of the
candidates; 1.0 for all when every f is equal. Needs no model-server metrics, so it reacts
between scrapes and to servers whose metrics are unknown.
Category: balance. Intent: spread bursts that arrive faster than the scrape interval.
Inputs: `Endpoint.in_flight` (`EndpointStore.begin` / `end`).
Configuration: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import (
    BuildContext,
    Category,
    CycleState,
    Endpoint,
    LLMRequest,
    Scorer,
    TypedName,
)
from poolgate.scheduling.scorers._minmax import inverted_minmax

TYPE = "in-flight-scorer"
Params = NoParams


class InFlightScorer:
    """Min-max normalised gateway in-flight count, fewer is better."""

    category = Category.BALANCE

    def __init__(self, name: str = TYPE) -> None:
        self.typed_name = TypedName(TYPE, name)

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        return inverted_minmax([e.address for e in endpoints], [e.in_flight for e in endpoints])


def create(name: str, params: NoParams, ctx: BuildContext) -> Scorer:
    """Factory for the registry."""
    return InFlightScorer(name)

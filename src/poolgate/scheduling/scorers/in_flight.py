"""`in-flight-scorer`: prefer endpoints with fewer of the gateway's own requests in flight.

What it does: `score = (f_max - f) / (f_max - f_min)` over the gateway in-flight counts f of the
candidates; 1.0 for all when every f is equal. Needs no model-server metrics, so it reacts
between scrapes and to servers whose metrics are unknown.
Category: balance. Intent: spread bursts that arrive faster than the scrape interval.
Inputs: `Endpoint.in_flight` (`EndpointStore.begin` / `end`), `Endpoint.awaiting_first_token`.
Configuration: `awaitingWeight` (0): with w > 0 the load is `f + w × a`, where a counts the
streamed requests still awaiting their first token (queued or prefilling on the server), so a
server busy with a long prefill looks busier than one only decoding.
"""

from __future__ import annotations

from collections.abc import Sequence

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
from poolgate.scheduling.scorers.params import InFlightParams

TYPE = "in-flight-scorer"
# The registry reads every plugin module's `Params` (the model lives in a plain module).
Params = InFlightParams


class InFlightScorer:
    """Min-max normalised gateway in-flight count, fewer is better."""

    category = Category.BALANCE

    def __init__(self, name: str = TYPE, params: InFlightParams | None = None) -> None:
        self.typed_name = TypedName(TYPE, name)
        self.awaiting_weight = (params or InFlightParams.model_validate({})).awaiting_weight

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        w = self.awaiting_weight
        if w:
            loads = [e.in_flight + w * e.awaiting_first_token for e in endpoints]
        else:
            loads = [e.in_flight for e in endpoints]
        return inverted_minmax([e.address for e in endpoints], loads)


def create(name: str, params: InFlightParams, ctx: BuildContext) -> Scorer:
    """Factory for the registry."""
    return InFlightScorer(name, params)

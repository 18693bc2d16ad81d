"""`queue-scorer`: prefer endpoints with a shorter waiting queue.

What it does: `score = (q_max - q) / (q_max - q_min)` over the candidates with known signals,
where q is the server's waiting-request count; 1.0 for all when every q is equal; 0 for an
endpoint with unknown signals.
Category: distribution. Intent: send work where it starts soonest.
Inputs: `Signals.waiting`.
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

TYPE = "queue-scorer"
Params = NoParams


class QueueScorer:
    """Min-max normalised waiting queue, shorter is better."""

    category = Category.DISTRIBUTION

    def __init__(self, name: str = TYPE) -> None:
        self.typed_name = TypedName(TYPE, name)

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        addresses: list[str] = []
        waiting: list[float] = []
        for e in endpoints:
            if e.signals is not None:
                addresses.append(e.address)
                waiting.append(e.signals.waiting)
        return inverted_minmax(addresses, waiting)


def create(name: str, params: NoParams, ctx: BuildContext) -> Scorer:
    """Factory for the registry."""
    return QueueScorer(name)

"""`max-score-picker`: the endpoint with the highest weighted total; ties broken at random.

What it does: takes the candidates whose total is within 1e-9 of the best and chooses one of
them uniformly with the scheduler's seeded RNG (the candidates' order does not matter, so a
fixed seed gives a fixed choice). Endpoints missing from the totals count as 0.
Configuration: none.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import BuildContext, CycleState, Endpoint, Picker, TypedName

TYPE = "max-score-picker"
Params = NoParams
_TIE = 1e-9


class MaxScorePicker:
    """Highest score wins; random among equals."""

    def __init__(self, name: str = TYPE, rng: random.Random | None = None) -> None:
        self.typed_name = TypedName(TYPE, name)
        self.rng = rng if rng is not None else random.Random()

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        if scores and len(scores) == len(endpoints):
            # The runner scores every candidate: find the best and its ties in C-level passes.
            top = max(scores.values())
            tied = [a for a, s in scores.items() if s >= top - _TIE]
            if len(tied) == 1:
                return tied[0]
            tied.sort()
            return tied[self.rng.randrange(len(tied))]
        best = -1.0
        tied = []
        for e in endpoints:
            s = scores.get(e.address, 0.0)
            if s > best + _TIE:
                best = s
                tied = [e.address]
            elif s >= best - _TIE:
                tied.append(e.address)
        if len(tied) == 1:
            return tied[0]
        tied.sort()
        return tied[self.rng.randrange(len(tied))]


def create(name: str, params: NoParams, ctx: BuildContext) -> Picker:
    """Factory for the registry."""
    return MaxScorePicker(name, ctx.rng)

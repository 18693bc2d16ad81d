"""`max-score-picker`: the endpoint with the highest weighted total; ties broken at random.

What it does: takes the candidates whose total is within 1e-9 of the best and chooses one of
them uniformly with the scheduler's seeded RNG (the candidates' order does not matter, so a
fixed seed gives a fixed choice). Endpoints missing from the totals count as 0.
Configuration: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import BuildContext, CycleState, Endpoint, Picker
from poolgate.scheduling.pickers._seeded import SeededPicker

TYPE = "max-score-picker"
Params = NoParams
_TIE = 1e-9


class MaxScorePicker(SeededPicker):
    """Highest score wins; random among equals."""

    TYPE = TYPE

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        if scores and len(scores) == len(endpoints):
            # The runner scores every candidate: find the best and its ties in C-level passes.
            top = max(scores.values())
            tied = [a for a, s in scores.items() if s >= top - _TIE]
            return tied[0] if len(tied) == 1 else self.any_of(tied)
        best = -1.0
        tied = []
        for e in endpoints:
            s = scores.get(e.address, 0.0)
            if s > best + _TIE:
                best = s
                tied = [e.address]
            elif s >= best - _TIE:
                tied.append(e.address)
        return tied[0] if len(tied) == 1 else self.any_of(tied)


def create(name: str, params: NoParams, ctx: BuildContext) -> Picker:
    """Factory for the registry."""
    return MaxScorePicker(name, ctx.rng)

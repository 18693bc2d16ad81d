"""`weighted-random-picker`: a random endpoint, with probability proportional to its total score.

What it does: `P(e) = score(e) / Σ score`; uniform when every score is 0. Uses the scheduler's
seeded RNG over the candidates sorted by address, so a fixed seed gives a fixed sequence.
Configuration: none.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import BuildContext, CycleState, Endpoint, Picker
from poolgate.scheduling.pickers._seeded import SeededPicker

TYPE = "weighted-random-picker"
Params = NoParams


class WeightedRandomPicker(SeededPicker):
    """Score-proportional random choice."""

    TYPE = TYPE

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        addresses = sorted(e.address for e in endpoints)
        weights = [max(0.0, scores.get(a, 0.0)) for a in addresses]
        total = sum(weights)
        if total <= 0.0:
            return self.any_of(addresses)
        cumulative = list(itertools.accumulate(weights))
        x = self.rng.random() * total
        i = bisect.bisect_right(cumulative, x)
        return addresses[min(i, len(addresses) - 1)]


def create(name: str, params: NoParams, ctx: BuildContext) -> Picker:
    """Factory for the registry."""
    return WeightedRandomPicker(name, ctx.rng)

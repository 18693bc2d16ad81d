"""`random-picker`: a uniformly random candidate, ignoring scores (a baseline for benchmarks).

Configuration: none. Uses the scheduler's seeded RNG over the candidates sorted by address.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import BuildContext, CycleState, Endpoint, Picker
from poolgate.scheduling.pickers._seeded import SeededPicker

TYPE = "random-picker"
Params = NoParams


class RandomPicker(SeededPicker):
    """Uniform random choice."""

    TYPE = TYPE

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        return self.any_of([e.address for e in endpoints])


def create(name: str, params: NoParams, ctx: BuildContext) -> Picker:
    """Factory for the registry."""
    return RandomPicker(name, ctx.rng)

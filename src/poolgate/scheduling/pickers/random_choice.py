"""`random-picker`: a uniformly random candidate, ignoring scores (a baseline for benchmarks).

Configuration: none. Uses the scheduler's seeded RNG over the candidates sorted by address.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import BuildContext, CycleState, Endpoint, Picker, TypedName

TYPE = "random-picker"
Params = NoParams


class RandomPicker:
    """Uniform random choice."""

    def __init__(self, name: str = TYPE, rng: random.Random | None = None) -> None:
        self.typed_name = TypedName(TYPE, name)
        self.rng = rng if rng is not None else random.Random()

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        addresses = sorted(e.address for e in endpoints)
        return addresses[self.rng.randrange(len(addresses))]


def create(name: str, params: NoParams, ctx: BuildContext) -> Picker:
    """Factory for the registry."""
    return RandomPicker(name, ctx.rng)

"""`round-robin-picker`: the candidates in turn, ignoring scores (a baseline for benchmarks).

What it does: keeps a counter; each pick takes `sorted(candidates)[counter % n]` and advances the
counter, so a stable candidate set is visited evenly even when it changes size.
Configuration: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import BuildContext, CycleState, Endpoint, Picker, TypedName

TYPE = "round-robin-picker"
Params = NoParams


class RoundRobinPicker:
    """Each candidate in turn."""

    def __init__(self, name: str = TYPE) -> None:
        self.typed_name = TypedName(TYPE, name)
        self._next = 0

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        addresses = sorted(e.address for e in endpoints)
        choice = addresses[self._next % len(addresses)]
        self._next += 1
        return choice


def create(name: str, params: NoParams, ctx: BuildContext) -> Picker:
    """Factory for the registry."""
    return RoundRobinPicker(name)

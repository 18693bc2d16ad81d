"""The base of the pickers that choose with the scheduler's seeded random generator."""

from __future__ import annotations

import random
from typing import ClassVar

from poolgate.scheduling.interfaces import TypedName


class SeededPicker:
    """Holds the picker's typed name and its random generator (the scheduler's, seeded, so a
    fixed seed gives a fixed sequence of choices)."""

    TYPE: ClassVar[str]

    def __init__(self, name: str | None = None, rng: random.Random | None = None) -> None:
        self.typed_name = TypedName(self.TYPE, name or self.TYPE)
        self.rng = rng if rng is not None else random.Random()

    def any_of(self, addresses: list[str]) -> str:
        """One of `addresses` (not empty), uniformly, in a seed-stable way (sorted first)."""
        addresses.sort()
        return addresses[self.rng.randrange(len(addresses))]

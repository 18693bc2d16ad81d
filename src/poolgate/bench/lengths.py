"""Token-length specifications (`128`, `64:256`, `normal:128,32`) and seeded sampling from them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from poolgate.bench.errors import BenchError

LengthKind = Literal["fixed", "uniform", "normal"]


@dataclass(frozen=True, slots=True)
class LengthSpec:
    """How many tokens to ask for: a fixed number, a uniform range or a clipped normal."""

    kind: LengthKind
    a: float  # fixed value, range low, or mean
    b: float  # fixed value, range high, or standard deviation

    @classmethod
    def fixed(cls, n: int) -> LengthSpec:
        if n < 1:
            raise BenchError(f"a length must be at least 1 token, got {n}")
        return cls("fixed", n, n)

    @classmethod
    def parse(cls, text: str) -> LengthSpec:
        """Parse `N`, `LOW:HIGH` (uniform, inclusive) or `normal:MEAN,STD`."""
        raw = text.strip()
        try:
            if raw.startswith("normal:"):
                mean_s, std_s = raw.removeprefix("normal:").split(",")
                mean, std = float(mean_s), float(std_s)
                if mean < 1 or std < 0:
                    raise BenchError(f"length {text!r}: need MEAN >= 1 and STD >= 0")
                return cls("normal", mean, std)
            if ":" in raw:
                low_s, high_s = raw.split(":")
                low, high = int(low_s), int(high_s)
                if low < 1 or high < low:
                    raise BenchError(f"length {text!r}: need 1 <= LOW <= HIGH")
                return cls("uniform", low, high)
            return cls.fixed(int(raw))
        except ValueError:
            raise BenchError(
                f"cannot parse length {text!r}: use N, LOW:HIGH or normal:MEAN,STD"
            ) from None

    def sample(self, rng: random.Random) -> int:
        """One length in tokens (always >= 1)."""
        if self.kind == "fixed":
            return int(self.a)
        if self.kind == "uniform":
            return rng.randint(int(self.a), int(self.b))
        return max(1, round(rng.gauss(self.a, self.b)))

    @property
    def mean(self) -> float:
        """The expected length (of the unclipped distribution)."""
        return (self.a + self.b) / 2 if self.kind == "uniform" else self.a

    def __str__(self) -> str:
        if self.kind == "fixed":
            return str(int(self.a))
        if self.kind == "uniform":
            return f"{int(self.a)}:{int(self.b)}"
        return f"normal:{self.a:g},{self.b:g}"

"""Percentiles and distribution summaries (linear interpolation between closest ranks)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100) of already-sorted values, linearly interpolated.

    Same definition as numpy's default (`method="linear"`): rank = q/100 * (n - 1).
    """
    if not sorted_values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"percentile {q} outside 0..100")
    rank = q / 100 * (len(sorted_values) - 1)
    lo = math.floor(rank)
    hi = min(lo + 1, len(sorted_values) - 1)
    frac = rank - lo
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * frac


@dataclass(frozen=True, slots=True)
class Distribution:
    """Count, mean, min, max and p50/p90/p99 of a sample (seconds for latencies)."""

    count: int
    mean: float | None
    p50: float | None
    p90: float | None
    p99: float | None
    min: float | None
    max: float | None

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution:
        if not values:
            return cls(0, None, None, None, None, None, None)
        s = sorted(values)
        return cls(
            count=len(s),
            mean=math.fsum(s) / len(s),
            p50=percentile(s, 50),
            p90=percentile(s, 90),
            p99=percentile(s, 99),
            min=s[0],
            max=s[-1],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count, "mean": self.mean, "p50": self.p50, "p90": self.p90,
            "p99": self.p99, "min": self.min, "max": self.max,
        }

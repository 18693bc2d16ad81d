"""A lock-free Prometheus histogram for series the request path updates.

prometheus_client's Histogram takes a lock per observation; these are plain Python numbers
that the event loop (their only writer) updates and a collector renders when /metrics is read.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

from prometheus_client.utils import floatToGoString


class Histogram:
    """Observations counted per bucket of `bounds` (ascending upper bounds, inclusive); the last
    slot of `counts` is +Inf."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # A bucket counts the values up to and including its bound.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add(self, counts: Sequence[int], total: float) -> None:
        """Add observations counted elsewhere over the same bounds."""
        mine = self.counts
        for i, n in enumerate(counts):
            if n:
                mine[i] += n
        self.sum += total

    @property
    def count(self) -> int:
        """Observations so far."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, float]]:
        """(le, count of observations <= le) per bucket, +Inf last: the exposition's buckets."""
        return cumulative(self.bounds, self.counts)


def cumulative(bounds: tuple[float, ...], counts: Sequence[int]) -> list[tuple[str, float]]:
    """The exposition's buckets of per-bucket `counts` over `bounds` (the last count is +Inf)."""
    out: list[tuple[str, float]] = []
    total = 0
    for bound, count in zip((*map(floatToGoString, bounds), "+Inf"), counts, strict=True):
        total += count
        out.append((bound, total))
    return out


def merged(histograms: Iterable[Histogram]) -> tuple[list[int], float]:
    """The per-bucket counts and sum of several histograms over the same bounds."""
    counts: list[int] | None = None
    total = 0.0
    for h in histograms:
        if counts is None:
            counts = list(h.counts)
        else:
            counts = [a + b for a, b in zip(counts, h.counts, strict=True)]
        total += h.sum
    return counts or [], total

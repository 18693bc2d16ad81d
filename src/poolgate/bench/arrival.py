"""Open-loop arrival schedules: send offsets (seconds from the start) for Poisson or constant rates."""

from __future__ import annotations

import random

from poolgate.bench.config import ArrivalKind
from poolgate.bench.errors import BenchError

# Bounds a duration-limited schedule so a typo like --rate 1e9 fails fast instead of eating memory.
MAX_ARRIVALS = 10_000_000


def arrival_offsets(
    kind: ArrivalKind,
    rate: float,
    *,
    seed: int,
    count: int | None = None,
    duration: float | None = None,
) -> list[float]:
    """Send times in seconds, starting at 0: `count` of them, or all that fall before `duration`.

    Poisson gaps are exponential with mean 1/rate (seeded); constant gaps are exactly 1/rate.
    """
    if (count is None) == (duration is None):
        raise ValueError("give exactly one of count or duration")
    if rate <= 0:
        raise ValueError("rate must be positive")
    rng = random.Random(f"{seed}/arrival")
    limit = count if count is not None else MAX_ARRIVALS
    offsets: list[float] = []
    t = 0.0
    i = 0
    while len(offsets) < limit:
        if duration is not None and t >= duration:
            break
        offsets.append(t)
        i += 1
        t = rng.expovariate(rate) + t if kind == "poisson" else i / rate
    if duration is not None and len(offsets) >= MAX_ARRIVALS:
        raise BenchError(f"more than {MAX_ARRIVALS} arrivals: lower --rate or --duration")
    return offsets

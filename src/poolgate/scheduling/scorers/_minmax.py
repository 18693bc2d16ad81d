"""Min-max normalisation of a per-endpoint load figure into a [0, 1] score (lower load, higher)."""

from __future__ import annotations


def inverted_minmax(addresses: list[str], loads: list[float]) -> dict[str, float]:
    """`(max - x) / (max - min)` per address (parallel lists); 1.0 for all when loads are equal."""
    if not loads:
        return {}
    lo = min(loads)
    hi = max(loads)
    if hi == lo:
        return dict.fromkeys(addresses, 1.0)
    span = hi - lo
    n = len(addresses)
    if len(loads) != n:
        raise ValueError("inverted_minmax: addresses and loads differ in length")
    out: dict[str, float] = {}
    for i in range(n):
        out[addresses[i]] = (hi - loads[i]) / span
    return out

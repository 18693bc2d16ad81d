"""Pool saturation and the shed decision for priority-aware load shedding.

A pool is saturated when no endpoint has fresh metrics below both thresholds (waiting queue and
KV-cache use); endpoints with unknown or stale metrics count as saturated, so a pool whose
metrics all went dark sheds sheddable traffic rather than piling on blind. Under saturation a
request is shed when its InferenceModel criticality is `Sheddable` or its InferenceObjective
priority is negative; `Critical`, `Standard` and priority >= 0 are never shed. The proxy answers
a shed request with `RequestShed` (429, "system saturated, sheddable request dropped").
"""

from __future__ import annotations

from collections.abc import Iterable

from poolgate.datalayer.store import DEFAULT_STALENESS, EndpointStore

SHEDDABLE = "Sheddable"


class SaturationDetector:
    """Decides whether a pool has no endpoint with headroom left."""

    def __init__(self, queue_threshold: int = 5, kv_threshold: float = 0.8,
                 staleness: float = DEFAULT_STALENESS) -> None:
        if queue_threshold < 0:
            raise ValueError(f"queue_threshold must be >= 0, got {queue_threshold}")
        if not 0.0 <= kv_threshold <= 1.0:
            raise ValueError(f"kv_threshold must be in [0, 1], got {kv_threshold}")
        if staleness <= 0:
            raise ValueError(f"staleness must be > 0 seconds, got {staleness}")
        self.queue_threshold = queue_threshold
        self.kv_threshold = kv_threshold
        self.staleness = staleness

    def has_headroom(self, address: str, store: EndpointStore, now: float) -> bool:
        """True when `address` has fresh metrics with waiting < queue and KV use < KV threshold."""
        s = store.fresh_signals(address, now, self.staleness)
        return s is not None and s.waiting < self.queue_threshold and s.kv_usage < self.kv_threshold

    def is_saturated(self, addresses: Iterable[str], store: EndpointStore, now: float) -> bool:
        """True when no endpoint of `addresses` has headroom (also for an empty pool)."""
        return not any(self.has_headroom(a, store, now) for a in addresses)


def should_shed(criticality: str | None, priority: int | None, saturated: bool) -> bool:
    """True when a request must be dropped: the pool is saturated and the request is sheddable.

    An InferenceModel criticality, when given, decides alone: `Sheddable` (case-insensitive) is
    shed, `Critical` and `Standard` never are. Without one, an InferenceObjective priority
    below 0 is shed; priority >= 0 or unset never is.
    """
    if not saturated:
        return False
    if criticality is not None:
        return criticality.lower() == SHEDDABLE.lower()
    return priority is not None and priority < 0

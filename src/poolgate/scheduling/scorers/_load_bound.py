"""The hotspot bounds of the prefix scorers: affinity stops for an endpoint that is too loaded.

Shared by `prefix-cache-scorer` (approximate index) and `precise-prefix-cache-scorer` (KV
events): both score leading blocks held, and both must not pile a popular prefix onto one
endpoint. The formulas (documented in `prefix_cache.py`):

- load bound (off when `loadBoundAbs` is unset): an endpoint whose
  `load > min_load + max(loadBoundAbs, loadBoundRel x min_load)` (and, with `loadBoundMean`,
  `load > loadBoundAbs + loadBoundMean x mean_load`) loses its match; `load` is
  `waiting + in_flight` or, with `loadSignal: in-flight`, the gateway's own in-flight count;
- prefill bound (off when `prefillBound` is unset): an endpoint with more than `prefillBound`
  streamed requests awaiting their first token loses its match, unless no candidate has fewer;
- hot prefixes (off when `hotPrefix` is unset; `prefix/replication.py`): a prefix group with
  more demand than a fraction of the load bound's limit gets a second holder before the first
  one reaches the bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from poolgate.scheduling.interfaces import Endpoint
from poolgate.scheduling.prefix.replication import HotPrefixPolicy
from poolgate.scheduling.scorers.params import LoadBoundParams

__all__ = ["LoadBound", "LoadBoundParams", "endpoint_load", "gateway_load"]


def endpoint_load(e: Endpoint) -> int:
    """The load the hotspot bound compares: server-side waiting queue plus gateway in-flight."""
    return (e.signals.waiting if e.signals is not None else 0) + e.in_flight


def gateway_load(e: Endpoint) -> int:
    """The gateway's own in-flight count: exact at pick time, no scrape lag."""
    return e.in_flight


class LoadBound:
    """Drops the matches of endpoints beyond the load or prefill bound."""

    def __init__(self, params: LoadBoundParams) -> None:
        self.abs = params.load_bound_abs
        self.rel = params.load_bound_rel
        self.mean = params.load_bound_mean
        self.load_of: Callable[[Endpoint], int] = (
            gateway_load if params.load_signal == "in-flight" else endpoint_load)
        self.prefill = params.prefill_bound
        self.hot_prefix = params.hot_prefix

    def limit(self, loads: Sequence[float]) -> float | None:
        """The load above which an endpoint loses its match, for candidates with `loads`
        (None without a load bound)."""
        bound_abs = self.abs
        if bound_abs is None or not loads:
            return None
        min_load = min(loads)
        limit = min_load + max(bound_abs, self.rel * min_load)
        if self.mean is not None:
            # Both bounds apply: the mean bound stops one endpoint running ahead of the fleet,
            # the least-loaded bound stops a prefix shared by most endpoints starving the rest.
            limit = min(limit, bound_abs + self.mean * sum(loads) / len(loads))
        return limit

    def hot_prefixes(self) -> HotPrefixPolicy | None:
        """A new hot-prefix policy over this bound (None when `hotPrefix` is unset)."""
        if self.hot_prefix is None:
            return None
        return HotPrefixPolicy(self.hot_prefix, self.limit, self.loads)

    def loads(self, endpoints: Sequence[Endpoint]) -> list[int]:
        """Every candidate's load, in order (what `load_of` gives, without a call each)."""
        if self.load_of is gateway_load:
            return [e.in_flight for e in endpoints]
        return [(e.signals.waiting if e.signals is not None else 0) + e.in_flight
                for e in endpoints]

    def apply(self, matches: dict[str, int], endpoints: Sequence[Endpoint]) -> dict[str, int]:
        """`matches` (address -> leading blocks held) without the endpoints over a bound."""
        if self.abs is not None and matches:
            matches = self._within_load_bound(matches, endpoints, self.abs)
        if self.prefill is not None and matches:
            matches = self._within_prefill_bound(matches, endpoints, self.prefill)
        return matches

    def _within_load_bound(self, matches: dict[str, int], endpoints: Sequence[Endpoint],
                           bound_abs: float) -> dict[str, int]:
        load_of = self.load_of
        loads = {e.address: load_of(e) for e in endpoints if e.address in matches}
        # Loads are >= 0, so a load within the absolute bound is always allowed: the common,
        # lightly loaded case needs no pass over every candidate.
        if max(loads.values()) <= bound_abs:
            return matches
        limit = self.limit([load_of(e) for e in endpoints])
        if limit is None:
            return matches
        return {a: n for a, n in matches.items() if loads[a] <= limit}

    @staticmethod
    def _within_prefill_bound(matches: dict[str, int], endpoints: Sequence[Endpoint],
                              bound: int) -> dict[str, int]:
        """A server admits new requests between engine steps, so a request sent while a long
        prefill (a prefix it did not have) is running waits in its queue for that step. Where
        another candidate is less busy the request goes by load instead of affinity."""
        over = {e.address for e in endpoints
                if e.awaiting_first_token > bound and e.address in matches}
        if not over:
            return matches
        least = min(e.awaiting_first_token for e in endpoints)
        busy = {e.address: e.awaiting_first_token for e in endpoints if e.address in over}
        return {a: n for a, n in matches.items() if a not in over or busy[a] <= least}

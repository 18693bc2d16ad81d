"""The runner: filters, then weighted scorers, then the picker, over live endpoint state.

It works only through the Protocols in `interfaces`; `builder.build_scheduler` assembles it
from a `SchedulerConfig`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.errors import NoEndpointAvailable
from poolgate.scheduling.interfaces import (
    CycleState,
    Endpoint,
    Filter,
    LLMRequest,
    Picker,
    PickObserver,
    PickResult,
    RetainsEndpoints,
    WeightedScorer,
)
from poolgate.scheduling.pick_log import DEFAULT_PICK_LOG_SIZE, PickExplanation, PickLog, explain


@dataclass(frozen=True, slots=True)
class SchedulerProfile:
    """One ordered pipeline: filters, weighted scorers, one picker."""

    name: str
    filters: tuple[Filter, ...]
    scorers: tuple[WeightedScorer, ...]
    picker: Picker
    observers: tuple[PickObserver, ...] = ()
    retainers: tuple[RetainsEndpoints, ...] = ()


class Scheduler:
    """Picks an endpoint for each request from the pool's addresses and their live state."""

    def __init__(self, profile: SchedulerProfile, store: EndpointStore,
                 staleness: float = 2.0, pick_log_size: int = DEFAULT_PICK_LOG_SIZE) -> None:
        self.profile = profile
        self.store = store
        self.staleness = staleness
        self._views: dict[str, Endpoint] = {}
        # The last picks and what decided them (the status page); O(1) per pick.
        self.picks = PickLog(pick_log_size, len(profile.scorers))

    def endpoints(self, addresses: Sequence[str], now: float) -> list[Endpoint]:
        """The plugin view of `addresses` at `now`: fresh signals or None, gateway in-flight
        counts (this replica's own plus the other replicas' last published ones)."""
        store = self.store
        stale_before = now - self.staleness
        views = self._views
        out: list[Endpoint] = []
        for address in addresses:
            state = store.get(address)
            if state is None:
                out.append(Endpoint(address, None, 0))
                continue
            signals = state.signals
            if signals is not None and signals.scraped_at < stale_before:
                signals = None
            # This process's own counts plus the other gateway replicas' (the same without a
            # shared view; see EndpointStore.set_peer_counts).
            in_flight = state.seen_in_flight
            awaiting = state.seen_awaiting_first_token
            # Endpoint is immutable; between scrapes most picks see the same signals and
            # in-flight count, so reusing the previous view saves building one per candidate.
            view = views.get(address)
            if (view is None or view.signals is not signals or view.in_flight != in_flight
                    or view.awaiting_first_token != awaiting):
                view = views[address] = Endpoint(address, signals, in_flight, awaiting)
            out.append(view)
        return out

    def pick(self, request: LLMRequest, endpoints: Sequence[str], now: float) -> PickResult:
        """Choose one of `endpoints` (addresses) for `request` at monotonic time `now`.

        Raises `NoEndpointAvailable` when `endpoints` is empty or a filter leaves nothing.
        Pure with respect to the store: it reads live state and changes nothing; it notes the
        pick in `picks` (see `recent_picks`). Call `on_picked` once the request is committed to
        the chosen endpoint.
        """
        if not endpoints:
            raise NoEndpointAvailable("no endpoint in the pool to send the request to")
        profile = self.profile
        cycle = CycleState(now)
        candidates: Sequence[Endpoint] = self.endpoints(endpoints, now)
        for f in profile.filters:
            candidates = f.filter(request, candidates, cycle)
            if not candidates:
                raise NoEndpointAvailable(
                    f"no endpoint available: filter {f.typed_name} removed every candidate")
        totals = dict.fromkeys([e.address for e in candidates], 0.0)
        record = self.picks.slot
        kept = record.scores  # each scorer's scores, kept by reference for `recent_picks`
        for i, weighted in enumerate(profile.scorers):
            weight = weighted.weight
            if weight == 0:
                kept[i] = None
                continue  # it cannot change any total; skip its work entirely
            scores = kept[i] = weighted.scorer.score(request, candidates, cycle)
            if not scores:
                continue
            for address, score in scores.items():
                # The runner, not each scorer, enforces the [0, 1] contract.
                if not 0.0 <= score <= 1.0:
                    score = 1.0 if score > 1.0 else 0.0  # below 0, or NaN
                try:
                    totals[address] += weight * score
                except KeyError:
                    pass  # a scorer's opinion of a filtered-out endpoint does not count
        address = profile.picker.pick(totals, candidates, cycle)
        record.at = now
        record.model = request.model
        record.lora = request.lora
        record.address = address
        record.offered = len(endpoints)
        record.candidates = len(candidates)
        record.totals = totals
        self.picks.commit()
        return PickResult(address, totals, profile.name)

    def recent_picks(self, limit: int | None = None) -> list[PickExplanation]:
        """The last picks (at most `limit`), newest first, each with what decided it."""
        profile = self.profile
        return [explain(record, profile.scorers, profile.picker)
                for record in self.picks.recent(limit)]

    def on_picked(self, request: LLMRequest, address: str) -> None:
        """Tell learning plugins (the prefix index) that `request` went to `address`."""
        for observer in self.profile.observers:
            observer.on_picked(request, address)

    def retain(self, addresses: Sequence[str]) -> None:
        """Drop per-endpoint plugin memory of endpoints that left the pool (on config reload)."""
        for plugin in self.profile.retainers:
            plugin.retain(addresses)
        keep = set(addresses)
        for address in [a for a in self._views if a not in keep]:
            del self._views[address]

"""Per-endpoint live state: the latest scraped `Signals` and the gateway's own in-flight counts.

One `EndpointStore` per gateway process. The scraper writes signals; the proxy calls `begin` /
`end` around every upstream request (and `answered` when a stream's first token arrives); the
scheduler reads both. With a shared in-flight view (several gateway replicas), the other
replicas' last published counts are set as `peer_*` (`set_peer_counts`) and the scheduler adds
them to this process's own. Everything is sync and O(1) per request, and runs on the event
loop thread only, so no locks are needed.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from poolgate.datalayer.signals import Signals

DEFAULT_STALENESS = 2.0
_NONE = (0, 0)


@dataclass(slots=True)
class EndpointState:
    """The live record of one endpoint (mutable; owned and changed only by `EndpointStore`)."""

    address: str
    signals: Signals | None = None
    in_flight: int = 0
    awaiting_first_token: int = 0
    # The other gateway replicas' counts, as last published (0 without a shared view).
    peer_in_flight: int = 0
    peer_awaiting_first_token: int = 0
    # What the picker sees: own + peers, kept up to date by every change of either, so a pick
    # reads one number per candidate instead of adding two.
    seen_in_flight: int = 0
    seen_awaiting_first_token: int = 0
    last_error: str | None = None
    last_error_at: float | None = None
    scrapes_ok: int = 0
    scrapes_failed: int = 0


class EndpointStore:
    """Live state of every endpoint, keyed by address `host:port`."""

    def __init__(self) -> None:
        self._states: dict[str, EndpointState] = {}
        self._view = MappingProxyType(self._states)
        # Every LoRA adapter any endpoint has reported running or waiting, per endpoint: vLLM
        # only names adapters while they have requests, so the gateway remembers them to tell
        # adapter requests (LoRA affinity) from base-model ones.
        self._adapters: dict[str, set[str]] = {}
        # Endpoints a connection could not be opened to since their last successful scrape or
        # health check: they left the server (SIGKILL, node gone), so pickers skip them at once
        # rather than until their metrics go stale.
        self.unreachable: set[str] = set()

    def _state(self, address: str) -> EndpointState:
        state = self._states.get(address)
        if state is None:
            state = self._states[address] = EndpointState(address)
        return state

    @property
    def states(self) -> Mapping[str, EndpointState]:
        """Read-only view of every record by address (for hot-path readers; do not mutate)."""
        return self._view

    def get(self, address: str) -> EndpointState | None:
        """The live record of `address`, or None when the store has never heard of it."""
        return self._states.get(address)

    def __iter__(self) -> Iterator[EndpointState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def begin(self, address: str, streamed: bool = False) -> None:
        """Count one request the gateway has sent to `address` and not yet finished.

        A `streamed` request also counts as awaiting its first token until `answered`.
        """
        state = self._state(address)
        state.in_flight += 1
        state.seen_in_flight += 1
        if streamed:
            state.awaiting_first_token += 1
            state.seen_awaiting_first_token += 1

    def answered(self, address: str) -> None:
        """A streamed request to `address` got its response head (its first token)."""
        state = self._states.get(address)
        if state is not None and state.awaiting_first_token > 0:
            state.awaiting_first_token -= 1
            state.seen_awaiting_first_token -= 1

    def end(self, address: str, unanswered: bool = False) -> None:
        """Count one of `address`'s gateway requests as finished (never goes below zero).

        `unanswered`: a streamed request that ended before `answered` (failure, disconnect).
        """
        state = self._states.get(address)
        if state is not None:
            if state.in_flight > 0:
                state.in_flight -= 1
                state.seen_in_flight -= 1
            if unanswered and state.awaiting_first_token > 0:
                state.awaiting_first_token -= 1
                state.seen_awaiting_first_token -= 1

    def in_flight(self, address: str) -> int:
        """Requests the gateway has in flight to `address`."""
        state = self._states.get(address)
        return state.in_flight if state is not None else 0

    def own_counts(self) -> dict[str, tuple[int, int]]:
        """This process's non-zero (in flight, awaiting first token) counts, by address: what
        it publishes to the other replicas."""
        return {a: (s.in_flight, s.awaiting_first_token) for a, s in self._states.items()
                if s.in_flight or s.awaiting_first_token}

    def set_peer_counts(self, totals: Mapping[str, tuple[int, int]]) -> None:
        """Replace the other replicas' counts with `totals` (address -> (in flight, awaiting
        first token)); endpoints not in it get 0. Addresses this store does not know (not in
        this process's pools, or not scraped yet) are ignored."""
        for address, state in self._states.items():
            f, w = totals.get(address, _NONE)
            state.peer_in_flight = f
            state.peer_awaiting_first_token = w
            state.seen_in_flight = state.in_flight + f
            state.seen_awaiting_first_token = state.awaiting_first_token + w

    def mark_unreachable(self, address: str) -> None:
        """A connection to `address` could not be opened."""
        self.unreachable.add(address)

    def mark_reachable(self, address: str) -> None:
        """`address` answered (a scrape or a health check): it may be picked again."""
        self.unreachable.discard(address)

    def update(self, address: str, signals: Signals) -> None:
        """Record a successful scrape of `address`."""
        self.unreachable.discard(address)
        state = self._state(address)
        state.signals = signals
        state.scrapes_ok += 1
        if signals.lora_running or signals.lora_waiting:
            known = self._adapters.setdefault(address, set())
            known.update(signals.lora_running)
            known.update(signals.lora_waiting)

    def known_adapters(self, addresses: Iterable[str]) -> set[str]:
        """The LoRA adapters ever reported by any of `addresses`."""
        out: set[str] = set()
        adapters = self._adapters
        for address in addresses:
            known = adapters.get(address)
            if known:
                out |= known
        return out

    def record_failure(self, address: str, reason: str, now: float) -> None:
        """Record a failed scrape; the previous signals are kept and go stale on their own."""
        state = self._state(address)
        state.last_error = reason
        state.last_error_at = now
        state.scrapes_failed += 1

    def signals(self, address: str) -> Signals | None:
        """The latest signals of `address`, however old, or None when never scraped."""
        state = self._states.get(address)
        return state.signals if state is not None else None

    def fresh_signals(self, address: str, now: float,
                      staleness: float = DEFAULT_STALENESS) -> Signals | None:
        """The latest signals of `address` if scraped at most `staleness` seconds before `now`.

        Older metrics count as unknown (None): a server that stopped answering its `/metrics` must
        not keep looking idle.
        """
        state = self._states.get(address)
        if state is None or state.signals is None:
            return None
        signals = state.signals
        return signals if now - signals.scraped_at <= staleness else None

    def retain(self, addresses: Iterable[str]) -> None:
        """Forget endpoints not in `addresses`, except those with requests still in flight."""
        keep = set(addresses)
        self.unreachable &= keep
        for address in [a for a in self._adapters if a not in keep]:
            del self._adapters[address]
        for address in list(self._states):
            if address not in keep and self._states[address].in_flight == 0:
                del self._states[address]

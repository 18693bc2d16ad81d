"""The plugin Protocols of the scheduler (`interfaces` re-exports them: import them from there).

A plain module: mypyc compiles `interfaces`, and a runtime-checkable Protocol compiled by it
fails to import (the builder checks plugins with isinstance).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from poolgate.datalayer.kv_events import KVEventsSource
    from poolgate.scheduling.interfaces import (
        Category,
        CycleState,
        Endpoint,
        LLMRequest,
        TypedName,
    )


@runtime_checkable
class Plugin(Protocol):
    """Anything the scheduler runs; identified by its `typed_name`."""

    typed_name: TypedName


@runtime_checkable
class Filter(Plugin, Protocol):
    """Narrows the candidates."""

    def filter(self, req: LLMRequest, endpoints: Sequence[Endpoint],
               cycle: CycleState) -> Sequence[Endpoint]:
        """A subset of `endpoints`, in their order; may be empty (the runner then gives up)."""
        ...


@runtime_checkable
class Scorer(Plugin, Protocol):
    """Rates candidates; knows nothing about its weight (`WeightedScorer` carries that)."""

    category: Category

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        """A score in [0, 1] per address (higher is better); a missing address scores 0.

        The runner clamps out-of-range values into [0, 1]. The dict is the caller's: return a
        new one per call (the scheduler keeps recent ones to explain its picks).
        """
        ...


@runtime_checkable
class Picker(Plugin, Protocol):
    """Chooses one endpoint from the scored candidates."""

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        """The address of one of `endpoints` (never empty); `scores` holds weighted totals."""
        ...


@runtime_checkable
class PickObserver(Plugin, Protocol):
    """A plugin that learns from the outcome of a pick (e.g. the prefix index)."""

    def on_picked(self, req: LLMRequest, address: str) -> None:
        """Record that `req` was sent to `address`."""
        ...


@runtime_checkable
class RetainsEndpoints(Plugin, Protocol):
    """A plugin with per-endpoint memory that must forget endpoints leaving the pool."""

    def retain(self, addresses: Sequence[str]) -> None:
        """Forget every endpoint not in `addresses`."""
        ...


@runtime_checkable
class UsesKVEvents(Plugin, Protocol):
    """A plugin fed by the model servers' KV events: the gateway subscribes `kv_events_source`
    to the endpoints of every pool whose profile has the plugin."""

    kv_events_source: KVEventsSource

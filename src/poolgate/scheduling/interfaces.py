"""The scheduling contracts: request, endpoint view, per-pick state and the plugin Protocols.

Only Protocols and plain dataclasses live here. Plugins import this module; it imports no
plugin; the runner (`scheduler.py`) works through these types alone. mypyc compiles this module
(setup.py), so the runtime-checkable Protocols and the generic `StateKey`, which it cannot
compile, are defined in plain modules (`protocols`, `state_key`) and re-exported here.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from poolgate.datalayer.kv_events import KVEventsHub
from poolgate.datalayer.signals import Signals
from poolgate.scheduling.protocols import Filter as Filter
from poolgate.scheduling.protocols import Picker as Picker
from poolgate.scheduling.protocols import PickObserver as PickObserver
from poolgate.scheduling.protocols import Plugin as Plugin
from poolgate.scheduling.protocols import RetainsEndpoints as RetainsEndpoints
from poolgate.scheduling.protocols import Scorer as Scorer
from poolgate.scheduling.protocols import UsesKVEvents as UsesKVEvents
from poolgate.scheduling.state_key import StateKey as StateKey

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class TypedName:
    """A plugin's registered kind (`type`, e.g. "queue-scorer") and its instance `name`."""

    type: str
    name: str

    def __str__(self) -> str:
        return self.type if self.name == self.type else f"{self.type}/{self.name}"


class Category(enum.Enum):
    """What a scorer pulls towards: the same place (affinity), spreading, or balancing load."""

    AFFINITY = "affinity"
    DISTRIBUTION = "distribution"
    BALANCE = "balance"


@dataclass(slots=True)
class LLMRequest:
    """What the scheduler knows about one request.

    `model` is the target model after the InferenceModel rewrite; `lora` is the adapter name
    when that target is a LoRA adapter, else None. `prompt_text` is the completions prompt and
    `messages` the chat messages (either may be None). `criticality` (Critical / Standard /
    Sheddable) and `priority` come from the InferenceModel / InferenceObjective. `stream` is
    the body's `"stream": true` (the response then starts with the first token). `body` is the
    parsed request body itself (referenced, not copied; read-only), for plugins that must see
    it as the model server will, such as a tokenizer. `memo` is per-request scratch that plugins
    may fill and reuse between `pick` and `on_picked` (for example the prefix block hashes); it
    is never compared.
    """

    model: str
    lora: str | None = None
    prompt_text: str | None = None
    messages: list[Any] | None = None
    criticality: str | None = None
    priority: int = 0
    request_id: str = ""
    stream: bool = False
    body: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    memo: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(slots=True)
class Endpoint:
    """One candidate endpoint as plugins see it during a pick.

    `signals` is None when the endpoint's metrics are unknown or older than the staleness bound;
    `in_flight` counts the gateway's own requests to it that have not finished yet (with a
    shared in-flight view: this replica's plus the other gateway replicas' last published
    counts); `awaiting_first_token` the streamed ones among them whose response has not started
    (the server is still queueing or prefilling them: vLLM starts a stream with its first token).
    """

    address: str
    signals: Signals | None
    in_flight: int = 0
    awaiting_first_token: int = 0


@dataclass(slots=True)
class CycleState:
    """Scratch data of one pick, shared between its plugins; a new one is made per pick."""

    now: float
    _data: dict[str, Any] = field(default_factory=dict)

    def read(self, key: StateKey[T]) -> T | None:
        """The value stored under `key` in this pick, or None."""
        value: T | None = self._data.get(key.name)
        return value

    def write(self, key: StateKey[T], value: T) -> None:
        """Store `value` under `key` for the rest of this pick."""
        self._data[key.name] = value


@dataclass(frozen=True, slots=True)
class PickResult:
    """The chosen endpoint, every candidate's weighted total score, and the profile used."""

    address: str
    scores: dict[str, float]
    profile: str


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a plugin factory may use besides its parameters: the scheduler's seeded RNG, and
    the gateway's KV-event hub (None outside a gateway, e.g. when a file is only validated:
    plugins then keep a private index no events reach)."""

    rng: random.Random
    kv_events: KVEventsHub | None = None


@dataclass(frozen=True, slots=True)
class WeightedScorer:
    """A scorer and the weight its scores are multiplied by in the total."""

    scorer: Scorer
    weight: float

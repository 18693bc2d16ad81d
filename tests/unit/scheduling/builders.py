"""Plain-data builders for scheduling tests: endpoints, requests, and one fake plugin."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from poolgate.datalayer.signals import Signals
from poolgate.scheduling.interfaces import (
    Category,
    CycleState,
    Endpoint,
    LLMRequest,
    TypedName,
)

NOW = 100.0


def ep(address: str = "10.0.0.1:8000", *, queue: int = 0, running: int = 0, kv: float = 0.0,
       loras: Iterable[str] = (), waiting_loras: Iterable[str] = (), max_lora: int | None = 4,
       in_flight: int = 0, awaiting: int = 0, known: bool = True) -> Endpoint:
    """An endpoint with fresh signals (or unknown ones when `known` is False)."""
    signals = Signals(
        waiting=queue, running=running, kv_usage=kv, lora_running=frozenset(loras),
        lora_waiting=frozenset(waiting_loras), max_lora=max_lora, scraped_at=NOW,
    ) if known else None
    return Endpoint(address, signals, in_flight, awaiting)


def req(model: str = "llama", *, lora: str | None = None, prompt: str | None = None,
        messages: list[Any] | None = None) -> LLMRequest:
    """A request for `model` (and `lora`) with a prompt or chat messages."""
    return LLMRequest(model=model, lora=lora, prompt_text=prompt, messages=messages)


def cycle(now: float = NOW) -> CycleState:
    """A fresh per-pick state."""
    return CycleState(now)


class FakePlugin:
    """One plugin implementing every Protocol, returning canned results, recording calls."""

    category = Category.BALANCE

    def __init__(self, name: str = "fake", *, scores: dict[str, float] | None = None,
                 keep: set[str] | None = None, choice: str | None = None) -> None:
        self.typed_name = TypedName("fake-plugin", name)
        self.scores = scores or {}
        self.keep = keep
        self.choice = choice
        self.seen_scores: dict[str, float] = {}
        self.picked: list[tuple[LLMRequest, str]] = []
        self.retained: list[Sequence[str]] = []

    def filter(self, r: LLMRequest, endpoints: Sequence[Endpoint],
               c: CycleState) -> Sequence[Endpoint]:
        return [e for e in endpoints if self.keep is None or e.address in self.keep]

    def score(self, r: LLMRequest, endpoints: Sequence[Endpoint],
              c: CycleState) -> dict[str, float]:
        return dict(self.scores)

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint], c: CycleState) -> str:
        self.seen_scores = dict(scores)
        return self.choice if self.choice is not None else endpoints[0].address

    def on_picked(self, r: LLMRequest, address: str) -> None:
        self.picked.append((r, address))

    def retain(self, addresses: Sequence[str]) -> None:
        self.retained.append(addresses)

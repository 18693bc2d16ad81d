"""`lora-affinity-scorer`: prefer endpoints where the requested adapter is already active.

What it does, for a request targeting adapter A:
  1.0 when A has running requests on the endpoint (loaded and in use);
  0.8 (`freeSlotScore`) when the endpoint has a free adapter slot (|running ∪ waiting| < max_lora);
  0.6 (`waitingScore`) when A only has waiting requests there (will load, but behind others);
  0.0 otherwise, and for unknown signals.
Requests for the base model get no score from it (neutral: every endpoint equal).
Category: affinity. Intent: reuse loaded adapters, avoid swapping.
Inputs: `Signals.lora_running`, `lora_waiting`, `max_lora`.
Configuration: `activeScore` (1.0), `freeSlotScore` (0.8), `waitingScore` (0.6).
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling.interfaces import (
    BuildContext,
    Category,
    CycleState,
    Endpoint,
    LLMRequest,
    Scorer,
    TypedName,
)
from poolgate.scheduling.scorers.params import LoraAffinityParams

TYPE = "lora-affinity-scorer"
# The registry reads every plugin module's `Params` (the model lives in a plain module).
Params = LoraAffinityParams


class LoraAffinityScorer:
    """Adapter active > free slot > adapter waiting > nothing."""

    category = Category.AFFINITY

    def __init__(self, name: str = TYPE, params: LoraAffinityParams | None = None) -> None:
        self.typed_name = TypedName(TYPE, name)
        p = params or LoraAffinityParams.model_validate({})
        self.active = p.active_score
        self.free_slot = p.free_slot_score
        self.waiting = p.waiting_score

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        adapter = req.lora
        if adapter is None:
            # Base-model request: no preference, and an empty result ranks everyone equally.
            return {}
        scores: dict[str, float] = {}
        for e in endpoints:
            s = e.signals
            if s is None:
                continue
            if adapter in s.lora_running:
                scores[e.address] = self.active
            elif s.max_lora is not None and len(s.lora_running | s.lora_waiting) < s.max_lora:
                scores[e.address] = self.free_slot
            elif adapter in s.lora_waiting:
                scores[e.address] = self.waiting
        return scores


def create(name: str, params: LoraAffinityParams, ctx: BuildContext) -> Scorer:
    """Factory for the registry."""
    return LoraAffinityScorer(name, params)

"""`lora-capable-filter`: for an adapter request, keep endpoints that can serve it without waiting
for an adapter slot.

What it does: when the request targets a LoRA adapter, keeps endpoints that already run or queue
that adapter, or have a free adapter slot (`|running ∪ waiting| < max_lora`). Requests for the
base model pass unfiltered. When no endpoint qualifies it keeps every candidate (a model server
queues the request until a slot frees), unless `strict` is set.
Intent: avoid adapter thrashing and the queueing it causes.
Inputs: `Signals.lora_running`, `lora_waiting`, `max_lora`; endpoints with unknown signals do
not qualify.
Configuration: `strict` (bool, default false).
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling.filters.params import LoraCapableParams
from poolgate.scheduling.interfaces import (
    BuildContext,
    CycleState,
    Endpoint,
    Filter,
    LLMRequest,
    TypedName,
)

TYPE = "lora-capable-filter"
# The registry reads every plugin module's `Params` (the model lives in a plain module).
Params = LoraCapableParams


def can_serve_adapter(endpoint: Endpoint, adapter: str) -> bool:
    """True when `endpoint` has `adapter` running or waiting, or a free adapter slot."""
    s = endpoint.signals
    if s is None:
        return False
    if adapter in s.lora_running or adapter in s.lora_waiting:
        return True
    return s.max_lora is not None and len(s.lora_running | s.lora_waiting) < s.max_lora


class LoraCapableFilter:
    """Keeps endpoints able to serve the requested adapter."""

    def __init__(self, name: str = TYPE, params: LoraCapableParams | None = None) -> None:
        self.typed_name = TypedName(TYPE, name)
        self.strict = (params or LoraCapableParams()).strict

    def filter(self, req: LLMRequest, endpoints: Sequence[Endpoint],
               cycle: CycleState) -> Sequence[Endpoint]:
        adapter = req.lora
        if adapter is None:
            return endpoints
        able = [e for e in endpoints if can_serve_adapter(e, adapter)]
        if able or self.strict:
            return able
        return endpoints


def create(name: str, params: LoraCapableParams, ctx: BuildContext) -> Filter:
    """Factory for the registry."""
    return LoraCapableFilter(name, params)

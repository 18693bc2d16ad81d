"""GPU slots for LoRA adapters: which adapters are resident, and which may be swapped out."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Set
from enum import Enum


class SlotDecision(Enum):
    """What scheduling a request for an adapter would take."""

    RESIDENT = "resident"  # already in a slot: no delay
    LOAD = "load"  # a slot is free or can be freed: pay the load delay
    WAIT = "wait"  # every slot holds an adapter with running requests


class LoraSlots:
    """`max_loras` slots, least recently used first; an adapter in use is never swapped out."""

    def __init__(self, max_loras: int) -> None:
        if max_loras < 1:
            raise ValueError("max_loras must be at least 1")
        self.max_loras = max_loras
        self._resident: OrderedDict[str, None] = OrderedDict()

    @property
    def resident(self) -> list[str]:
        """Adapters in slots, least recently used first."""
        return list(self._resident)

    def decide(self, adapter: str, in_use: Set[str]) -> SlotDecision:
        """Whether `adapter` can run now, given the adapters that running requests use."""
        if adapter in self._resident:
            return SlotDecision.RESIDENT
        if len(self._resident) < self.max_loras:
            return SlotDecision.LOAD
        if any(a not in in_use for a in self._resident):
            return SlotDecision.LOAD
        return SlotDecision.WAIT

    def use(self, adapter: str, in_use: Set[str]) -> bool:
        """Mark `adapter` used, loading it (and evicting an idle one) if needed; True if loaded."""
        if adapter in self._resident:
            self._resident.move_to_end(adapter)
            return False
        if len(self._resident) >= self.max_loras:
            victim = next((a for a in self._resident if a not in in_use), None)
            if victim is None:
                raise RuntimeError(f"no free LoRA slot for {adapter!r}")
            del self._resident[victim]
        self._resident[adapter] = None
        return True

    def evict(self, adapter: str) -> None:
        """Forget `adapter` (it was unloaded through the API)."""
        self._resident.pop(adapter, None)

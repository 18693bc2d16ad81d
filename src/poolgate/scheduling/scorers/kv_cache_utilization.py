"""`kv-cache-utilization-scorer`: prefer endpoints with more free KV cache.

What it does: `score = 1 - kv_usage` (kv_usage in [0, 1]); 0 for unknown signals.
Category: distribution. Intent: avoid servers close to preempting requests for lack of KV blocks.
Inputs: `Signals.kv_usage` (`vllm:kv_cache_usage_perc`, `sglang:token_usage`).
Configuration: none.
"""

from __future__ import annotations

from collections.abc import Sequence

from poolgate.scheduling._params import NoParams
from poolgate.scheduling.interfaces import (
    BuildContext,
    Category,
    CycleState,
    Endpoint,
    LLMRequest,
    Scorer,
    TypedName,
)

TYPE = "kv-cache-utilization-scorer"
Params = NoParams


class KvCacheUtilizationScorer:
    """Free KV-cache fraction."""

    category = Category.DISTRIBUTION

    def __init__(self, name: str = TYPE) -> None:
        self.typed_name = TypedName(TYPE, name)

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        return {e.address: 1.0 - e.signals.kv_usage for e in endpoints if e.signals is not None}


def create(name: str, params: NoParams, ctx: BuildContext) -> Scorer:
    """Factory for the registry."""
    return KvCacheUtilizationScorer(name)

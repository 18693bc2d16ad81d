"""The pydantic parameter models of the scorers whose scoring code mypyc compiles (setup.py).

mypyc cannot compile a pydantic model (its fields come out as typed native attributes), so these
live in this plain module; each scorer's module re-exports its model as `Params`, which is what
the registry and the tests use. The plugins' documentation stays in their own modules.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, model_validator

from poolgate.scheduling._params import PluginParams
from poolgate.scheduling.prefix.index import (
    DEFAULT_MAX_BLOCKS_PER_ENDPOINT,
    DEFAULT_MAX_BLOCKS_TOTAL,
)
from poolgate.scheduling.prefix.replication import HotPrefixParams


class InFlightParams(PluginParams):
    """Parameters of `in-flight-scorer`."""

    awaiting_weight: float = Field(0.0, ge=0.0)


class LoraAffinityParams(PluginParams):
    """Parameters of `lora-affinity-scorer` (each a score in [0, 1])."""

    active_score: float = Field(1.0, ge=0.0, le=1.0)
    free_slot_score: float = Field(0.8, ge=0.0, le=1.0)
    waiting_score: float = Field(0.6, ge=0.0, le=1.0)


class LoadBoundParams(PluginParams):
    """The hotspot-bound parameters both prefix scorers take."""

    load_bound_abs: float | None = Field(None, ge=0.0)
    load_bound_rel: float = Field(0.5, ge=0.0)
    load_bound_mean: float | None = Field(None, ge=0.0)
    load_signal: Literal["waiting+in-flight", "in-flight"] = "waiting+in-flight"
    prefill_bound: int | None = Field(None, ge=0)
    hot_prefix: HotPrefixParams | None = None

    @model_validator(mode="after")
    def _hot_prefix_has_a_target(self) -> LoadBoundParams:
        hot = self.hot_prefix
        if hot is None:
            return self
        if self.load_bound_abs is None and hot.replica_concurrency is None:
            raise ValueError(
                "hotPrefix needs loadBoundAbs (a holder's target is hotPrefix.replicateAt x the "
                "load bound's limit) or hotPrefix.replicaConcurrency")
        max_blocks = getattr(self, "max_blocks", None)
        if isinstance(max_blocks, int) and hot.group_blocks > max_blocks:
            raise ValueError(
                f"hotPrefix.groupBlocks ({hot.group_blocks}) is more than maxBlocks "
                f"({max_blocks}): no request would belong to a group")
        return self


class PrefixCacheParams(LoadBoundParams):
    """Parameters of `prefix-cache-scorer` (the load bounds' are in `LoadBoundParams`)."""

    block_size: int = Field(64, ge=1, description="characters per hashed block")
    # The GIE prefix plugin's names are accepted too, so its configurations load unchanged.
    max_blocks: int = Field(
        128, ge=1, description="blocks hashed per request at most",
        validation_alias=AliasChoices("maxBlocks", "max_blocks", "maxPrefixBlocksToMatch"))
    max_blocks_per_endpoint: int = Field(
        DEFAULT_MAX_BLOCKS_PER_ENDPOINT, ge=1,
        validation_alias=AliasChoices(
            "maxBlocksPerEndpoint", "max_blocks_per_endpoint", "lruCapacityPerServer"))
    max_blocks_total: int = Field(DEFAULT_MAX_BLOCKS_TOTAL, ge=1)
    miss_spread: float = Field(0.0, ge=0.0, le=1.0)

"""The plugin registry: every plugin type poolgate knows, with its kind, `Params` model and factory.

All registrations are in the one list below, so a reader sees every plugin in one place.
"""

from __future__ import annotations

import builtins
import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from poolgate.scheduling._params import PluginParams
from poolgate.scheduling.filters import fresh_metrics, lora_capable
from poolgate.scheduling.interfaces import BuildContext, Plugin
from poolgate.scheduling.pickers import max_score, random_choice, round_robin, weighted_random
from poolgate.scheduling.scorers import (
    in_flight,
    kv_cache_utilization,
    lora_affinity,
    prefix_cache,
    queue_depth,
)


class PluginKind(enum.Enum):
    """Which stage of the pipeline a plugin type belongs to."""

    FILTER = "filter"
    SCORER = "scorer"
    PICKER = "picker"


# A factory receives the instance name, its validated parameters and the build context.
Factory = Callable[[str, Any, BuildContext], Plugin]


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """How to build one plugin type."""

    type: str
    kind: PluginKind
    params: builtins.type[PluginParams]
    factory: Factory


REGISTRY: dict[str, PluginSpec] = {}


def register(spec: PluginSpec) -> None:
    """Add a plugin type; registering a type twice is a programming error."""
    if spec.type in REGISTRY:
        raise ValueError(f"plugin type {spec.type!r} is already registered")
    REGISTRY[spec.type] = spec


for _spec in (
    PluginSpec(fresh_metrics.TYPE, PluginKind.FILTER, fresh_metrics.Params, fresh_metrics.create),
    PluginSpec(lora_capable.TYPE, PluginKind.FILTER, lora_capable.Params, lora_capable.create),
    PluginSpec(queue_depth.TYPE, PluginKind.SCORER, queue_depth.Params, queue_depth.create),
    PluginSpec(kv_cache_utilization.TYPE, PluginKind.SCORER, kv_cache_utilization.Params,
               kv_cache_utilization.create),
    PluginSpec(lora_affinity.TYPE, PluginKind.SCORER, lora_affinity.Params, lora_affinity.create),
    PluginSpec(prefix_cache.TYPE, PluginKind.SCORER, prefix_cache.Params, prefix_cache.create),
    PluginSpec(in_flight.TYPE, PluginKind.SCORER, in_flight.Params, in_flight.create),
    PluginSpec(max_score.TYPE, PluginKind.PICKER, max_score.Params, max_score.create),
    PluginSpec(weighted_random.TYPE, PluginKind.PICKER, weighted_random.Params,
               weighted_random.create),
    PluginSpec(random_choice.TYPE, PluginKind.PICKER, random_choice.Params, random_choice.create),
    PluginSpec(round_robin.TYPE, PluginKind.PICKER, round_robin.Params, round_robin.create),
):
    register(_spec)

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
    precise_prefix_cache,
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


# Every plugin module has the same shape: `TYPE`, `Params`, `create`.
for _kind, _module in (
    (PluginKind.FILTER, fresh_metrics),
    (PluginKind.FILTER, lora_capable),
    (PluginKind.SCORER, queue_depth),
    (PluginKind.SCORER, kv_cache_utilization),
    (PluginKind.SCORER, lora_affinity),
    (PluginKind.SCORER, prefix_cache),
    (PluginKind.SCORER, precise_prefix_cache),
    (PluginKind.SCORER, in_flight),
    (PluginKind.PICKER, max_score),
    (PluginKind.PICKER, weighted_random),
    (PluginKind.PICKER, random_choice),
    (PluginKind.PICKER, round_robin),
):
    register(PluginSpec(_module.TYPE, _kind, _module.Params, _module.create))

"""Assembling a `Scheduler` from a `SchedulerConfig` through the plugin registry."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from poolgate.api.validation_text import describe_validation_error
from poolgate.datalayer.kv_events import KVEventsHub
from poolgate.datalayer.store import EndpointStore
from poolgate.observability.scheduling import SchedulerTimings
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.interfaces import (
    BuildContext,
    Filter,
    Picker,
    PickObserver,
    RetainsEndpoints,
    Scorer,
    WeightedScorer,
)
from poolgate.scheduling.pickers.max_score import MaxScorePicker
from poolgate.scheduling.registry import REGISTRY, PluginKind
from poolgate.scheduling.scheduler import Scheduler, SchedulerProfile
from poolgate.scheduling.timed import TimedScheduler


def build_profile(config: SchedulerConfig, rng: random.Random | None = None,
                  kv_events: KVEventsHub | None = None) -> SchedulerProfile:
    """The plugin pipeline `config` describes; raises `SchedulerConfigError` on any problem.

    Filters run in the listed order. A profile without a picker gets `max-score-picker`; two
    pickers, a weight on a non-scorer, or a repeated instance name are errors. `kv_events` is
    the gateway's KV-event hub, for plugins fed by the model servers' events.
    """
    ctx = BuildContext(rng if rng is not None else random.Random(config.seed), kv_events)
    filters: list[Filter] = []
    scorers: list[WeightedScorer] = []
    pickers: list[Picker] = []
    observers: list[PickObserver] = []
    retainers: list[RetainsEndpoints] = []
    seen: set[str] = set()
    for i, entry in enumerate(config.resolved_plugins()):
        where = f"profile {config.profile!r} plugin #{i + 1} ({entry.type})"
        spec = REGISTRY.get(entry.type)
        if spec is None:
            known = ", ".join(sorted(REGISTRY))
            raise SchedulerConfigError(
                f"{where}: unknown plugin type {entry.type!r} (known types: {known})")
        name = entry.instance_name
        if name in seen:
            raise SchedulerConfigError(f"{where}: plugin name {name!r} is used twice")
        seen.add(name)
        try:
            params = spec.params.model_validate(entry.params)
        except ValidationError as exc:
            raise SchedulerConfigError(
                f"{where}: bad params: {describe_validation_error(exc)}") from exc
        if entry.weight is not None and spec.kind is not PluginKind.SCORER:
            raise SchedulerConfigError(f"{where}: only scorers take a weight")
        plugin = spec.factory(name, params, ctx)
        if spec.kind is PluginKind.FILTER:
            assert isinstance(plugin, Filter)
            filters.append(plugin)
        elif spec.kind is PluginKind.SCORER:
            assert isinstance(plugin, Scorer)
            scorers.append(WeightedScorer(plugin, entry.weight if entry.weight is not None else 1.0))
        else:
            assert isinstance(plugin, Picker)
            if pickers:
                raise SchedulerConfigError(
                    f"{where}: a profile has one picker; {pickers[0].typed_name} came first")
            pickers.append(plugin)
        if isinstance(plugin, PickObserver):
            observers.append(plugin)
        if isinstance(plugin, RetainsEndpoints):
            retainers.append(plugin)
    picker = pickers[0] if pickers else MaxScorePicker(rng=ctx.rng)
    return SchedulerProfile(config.profile, tuple(filters), tuple(scorers), picker,
                            tuple(observers), tuple(retainers))


def build_scheduler(config: SchedulerConfig | Mapping[str, Any] | str | None,
                    store: EndpointStore, *, seed: int | None = None,
                    timings: SchedulerTimings | None = None,
                    kv_events: KVEventsHub | None = None) -> Scheduler:
    """A `Scheduler` over `store` from a config object, a config dict, or a built-in profile name.

    `seed` (else `config.seed`) fixes every random choice; with `timings` the scheduler
    records its latency there (`TimedScheduler`).
    """
    if config is None or isinstance(config, str):
        config = SchedulerConfig(profile=config or "default")
    elif not isinstance(config, SchedulerConfig):
        config = SchedulerConfig.from_dict(config)
    rng = random.Random(seed if seed is not None else config.seed)
    profile = build_profile(config, rng, kv_events)
    if timings is not None:
        return TimedScheduler(profile, store, config.staleness, timings)
    return Scheduler(profile, store, staleness=config.staleness)

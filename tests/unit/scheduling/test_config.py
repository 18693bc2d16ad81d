from __future__ import annotations

from typing import Any

import pytest

from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_profile, build_scheduler
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.pickers.max_score import MaxScorePicker
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.scheduling.registry import REGISTRY, PluginKind, PluginSpec, register
from poolgate.scheduling.scorers.prefix_cache import PrefixCacheScorer


def test_builtin_profiles_are_the_documented_set() -> None:
    assert set(BUILTIN_PROFILES) == {"default", "round-robin", "random", "least-in-flight",
                                     "prefix-only", "queue-kv"}


def test_default_profile_shape() -> None:
    profile = build_profile(SchedulerConfig())
    assert [str(f.typed_name) for f in profile.filters] == [
        "fresh-metrics-filter", "lora-capable-filter"]
    weights = {str(w.scorer.typed_name): w.weight for w in profile.scorers}
    assert weights == {"prefix-cache-scorer": 4, "queue-scorer": 1, "in-flight-scorer": 1,
                       "lora-affinity-scorer": 1}
    prefix = profile.scorers[0].scorer
    assert isinstance(prefix, PrefixCacheScorer)
    assert (prefix.bound.abs, prefix.bound.rel, prefix.bound.mean) == (12, 1.0, 2.0)
    assert prefix.miss_spread == 0.5 and prefix.bound.load_of.__name__ == "gateway_load"
    assert profile.observers == (prefix,)
    assert isinstance(profile.picker, MaxScorePicker)


def test_custom_plugin_list_from_dict() -> None:
    config = SchedulerConfig.from_dict({
        "profile": "mine", "staleness": 1.5, "seed": 4,
        "plugins": [
            {"type": "prefix-cache-scorer", "name": "px", "weight": 2,
             "params": {"blockSize": 32, "max_blocks": 10}},
            {"type": "queue-scorer"},
        ],
    })
    scheduler = build_scheduler(config, EndpointStore())
    assert scheduler.staleness == 1.5
    assert scheduler.profile.name == "mine"
    scorer = scheduler.profile.scorers[0]
    assert str(scorer.scorer.typed_name) == "prefix-cache-scorer/px"
    assert scorer.weight == 2
    assert isinstance(scorer.scorer, PrefixCacheScorer)
    assert (scorer.scorer.block_size, scorer.scorer.max_blocks) == (32, 10)
    assert scheduler.profile.scorers[1].weight == 1.0
    assert isinstance(scheduler.profile.picker, MaxScorePicker)


@pytest.mark.parametrize(("data", "message"), [
    pytest.param({"profile": "nope"}, "unknown scheduling profile 'nope'", id="unknown-profile"),
    pytest.param({"plugins": [{"type": "magic-scorer"}]},
                 "unknown plugin type 'magic-scorer' (known types: ", id="unknown-type"),
    pytest.param({"plugins": [{"type": "prefix-cache-scorer", "params": {"blockSize": 0}}]},
                 "plugin #1 (prefix-cache-scorer): bad params: blockSize: input should be "
                 "greater than or equal to 1 (got 0)", id="bad-param-value"),
    pytest.param({"plugins": [{"type": "queue-scorer", "params": {"typo": 1}}]},
                 "bad params: typo: unknown field", id="unknown-param"),
    pytest.param({"plugins": [{"type": "max-score-picker"}, {"type": "random-picker"}]},
                 "a profile has one picker", id="two-pickers"),
    pytest.param({"plugins": [{"type": "fresh-metrics-filter", "weight": 2}]},
                 "only scorers take a weight", id="weighted-filter"),
    pytest.param({"plugins": [{"type": "queue-scorer"}, {"type": "queue-scorer"}]},
                 "plugin name 'queue-scorer' is used twice", id="duplicate-name"),
])
def test_bad_configs_fail_with_a_clear_message(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SchedulerConfigError) as info:
        build_scheduler(data, EndpointStore())
    assert message in str(info.value)


@pytest.mark.parametrize(("data", "message"), [
    pytest.param({"staleness": 0}, "staleness: input should be greater than 0 (got 0)", id="staleness"),
    pytest.param({"plugins": [{"type": "queue-scorer", "weight": -1}]},
                 "plugins[0].weight: input should be greater than or equal to 0 (got -1)",
                 id="weight"),
    pytest.param({"profle": "x"}, "profle: unknown field", id="typo"),
])
def test_bad_config_fields(data: dict[str, Any], message: str) -> None:
    with pytest.raises(SchedulerConfigError, match="invalid scheduler config") as info:
        SchedulerConfig.from_dict(data)
    assert message in str(info.value)


def test_gie_endpoint_picker_config() -> None:
    doc = {
        "apiVersion": "inference.networking.x-k8s.io/v1alpha1",
        "kind": "EndpointPickerConfig",
        "plugins": [
            {"type": "single-profile-handler"},
            {"type": "queue-scorer"},
            {"type": "prefix-cache-scorer", "name": "prefix",
             "parameters": {"blockSize": 64, "maxPrefixBlocksToMatch": 256,
                            "lruCapacityPerServer": 31250}},
            {"type": "max-score-picker"},
        ],
        "schedulingProfiles": [{"name": "default", "plugins": [
            {"pluginRef": "single-profile-handler"},
            {"pluginRef": "queue-scorer", "weight": 2},
            {"pluginRef": "prefix", "weight": 3},
            {"pluginRef": "max-score-picker"},
        ]}],
    }
    config = SchedulerConfig.from_endpoint_picker_config(doc)
    profile = build_profile(config)
    assert [(str(w.scorer.typed_name), w.weight) for w in profile.scorers] == [
        ("queue-scorer", 2), ("prefix-cache-scorer/prefix", 3)]
    with pytest.raises(SchedulerConfigError, match="undeclared plugin 'ghost'"):
        SchedulerConfig.from_endpoint_picker_config(
            {"plugins": [], "schedulingProfiles": [{"name": "p",
                                                   "plugins": [{"pluginRef": "ghost"}]}]})
    with pytest.raises(SchedulerConfigError, match="no scheduling profile 'x'"):
        SchedulerConfig.from_endpoint_picker_config(doc, profile="x")


def test_registry_rejects_duplicates_and_lists_kinds() -> None:
    spec = REGISTRY["queue-scorer"]
    assert spec.kind is PluginKind.SCORER
    with pytest.raises(ValueError, match="already registered"):
        register(PluginSpec("queue-scorer", spec.kind, spec.params, spec.factory))
    kinds = {s.kind for s in REGISTRY.values()}
    assert kinds == set(PluginKind)

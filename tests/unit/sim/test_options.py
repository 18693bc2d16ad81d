"""Option checks and derived values."""

from __future__ import annotations

import pytest

from poolgate.sim.faults import Faults, FaultSettings
from poolgate.sim.options import SimOptions, parse_lora_module


def test_defaults_come_from_the_profile() -> None:
    o = SimOptions(profile="fast")
    assert (o.num_seqs, o.model_len, o.num_blocks) == (32, 2048, 512)
    assert o.model_names == ("/model/llama2",)
    assert SimOptions(served_model_names=("a", "b")).model_names == ("a", "b")


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"profile": "nope"}, "unknown profile", id="profile"),
    pytest.param({"time_scale": 0}, "--time-scale", id="time-scale"),
    pytest.param({"max_model_len": 10_000, "profile": "fast"}, "KV cache", id="kv-too-small"),
    pytest.param({"lora_modules": (("a", "/x"), ("a", "/y"))}, "unique", id="dup-lora"),
])
def test_bad_options_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimOptions(**kwargs)  # type: ignore[arg-type]


def test_replica_seeds_are_stable_and_distinct() -> None:
    o = SimOptions(seed=3)
    assert o.replica_seed(0) == SimOptions(seed=3).replica_seed(0)
    assert o.replica_seed(0) != o.replica_seed(1)


def test_lora_module_parsing() -> None:
    assert parse_lora_module("sql=/adapters/sql") == ("sql", "/adapters/sql")
    with pytest.raises(ValueError):
        parse_lora_module("sql")


def test_fault_updates_are_validated_as_a_whole() -> None:
    f = Faults(FaultSettings(), seed=1)
    assert f.update({"error_rate": 1.0}).error_rate == 1.0
    with pytest.raises(ValueError):
        f.update({"error_rate": 2})
    assert f.settings.error_rate == 1.0
    assert all(f.plan().kind.value == "error" for _ in range(5))

from __future__ import annotations

import random
from collections import Counter

from poolgate.config.choice import choose_backend, choose_target_model
from poolgate.config.matching import RouteMatch
from poolgate.config.snapshot import Backend, InferenceModelSpec, RouteRule, TargetModel


def backend(name: str, weight: int) -> Backend:
    return Backend("Address", name, "default", weight, f"k/{name}", host=name, port=1)


def rule(*backends: Backend) -> RouteRule:
    return RouteRule(index=0, matches=(RouteMatch.build(),), backends=backends)


def test_weighted_split_follows_weights() -> None:
    rnd = random.Random(7)
    r = rule(backend("a", 1), backend("b", 3), backend("off", 0))
    counts = Counter(choose_backend(r, rnd).name for _ in range(8000))
    assert counts["off"] == 0
    assert 0.20 < counts["a"] / 8000 < 0.30
    assert 0.70 < counts["b"] / 8000 < 0.80


def test_single_backend_and_no_backend() -> None:
    only = backend("a", 5)
    assert choose_backend(rule(only), random.Random(1)) is only
    none = choose_backend(rule(), random.Random(1))
    assert none.error == "the route rule has no backendRefs"
    zero = choose_backend(rule(backend("a", 0), backend("b", 0)), random.Random(1))
    assert zero.error == "every backendRef of the route rule has weight 0"


def spec(*targets: TargetModel) -> InferenceModelSpec:
    return InferenceModelSpec("default", "m", "chat", "Critical", targets, "default/pool")


def test_target_model_split_follows_weights() -> None:
    rnd = random.Random(11)
    s = spec(TargetModel("base", 90), TargetModel("lora", 10), TargetModel("off", 0))
    counts = Counter(choose_target_model(s, rnd) for _ in range(5000))
    assert counts["off"] == 0
    assert 0.85 < counts["base"] / 5000 < 0.95


def test_no_targets_means_the_model_name_itself() -> None:
    assert choose_target_model(spec(), random.Random(0)) == "chat"


def test_choices_are_reproducible_with_a_seed() -> None:
    s = spec(TargetModel("a", 1), TargetModel("b", 1))
    first = [choose_target_model(s, random.Random(3)) for _ in range(3)]
    again = [choose_target_model(s, random.Random(3)) for _ in range(3)]
    assert first == again

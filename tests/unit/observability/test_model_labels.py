"""Bounded model labels: configured names, served names within a cap, `unknown`, `other`."""

from __future__ import annotations

from poolgate.observability.model_labels import OTHER, UNKNOWN, ModelLabels


def test_a_name_nobody_knows_is_unknown_until_a_server_serves_it() -> None:
    labels = ModelLabels()
    assert labels.label("gpt-4o") == UNKNOWN
    assert labels.served("llama") == "llama"
    assert labels.label("llama") == "llama"
    assert labels.label(None) == ""


def test_configured_names_are_pinned_and_outside_the_cap() -> None:
    labels = ModelLabels(cap=1)
    labels.pin(["food-review", "food-review-1"])
    assert labels.served("a") == "a"
    assert labels.served("b") == OTHER  # served, but past the cap
    assert labels.label("b") == UNKNOWN
    assert labels.label("food-review-1") == "food-review-1"
    labels.pin(["other-model"])  # a reload replaces the configured names
    assert labels.label("food-review") == UNKNOWN
    assert labels.served_names == frozenset({"a"})

from __future__ import annotations

import random
from collections import Counter

import pytest

from poolgate.scheduling.pickers.max_score import MaxScorePicker
from poolgate.scheduling.pickers.random_choice import RandomPicker
from poolgate.scheduling.pickers.round_robin import RoundRobinPicker
from poolgate.scheduling.pickers.weighted_random import WeightedRandomPicker

from .builders import cycle, ep

EPS = [ep("a:1"), ep("b:1"), ep("c:1"), ep("d:1")]


def test_max_score_picker_takes_the_best() -> None:
    picker = MaxScorePicker(rng=random.Random(1))
    assert picker.pick({"a:1": 0.2, "b:1": 2.5, "c:1": 1.0}, EPS, cycle()) == "b:1"


def _ties(seed: int, order: list[int]) -> list[str]:
    picker = MaxScorePicker(rng=random.Random(seed))
    eps = [EPS[i] for i in order]
    return [picker.pick({"a:1": 1.0, "b:1": 1.0, "c:1": 1.0, "d:1": 0.5}, eps, cycle())
            for _ in range(30)]


def test_max_score_picker_tie_break_is_seeded_and_order_independent() -> None:
    first = _ties(7, [0, 1, 2, 3])
    assert first == _ties(7, [3, 2, 1, 0])
    assert set(first) == {"a:1", "b:1", "c:1"}
    assert first != _ties(8, [0, 1, 2, 3])


def test_max_score_picker_treats_missing_scores_as_zero() -> None:
    picker = MaxScorePicker(rng=random.Random(1))
    assert picker.pick({"c:1": 0.1}, EPS, cycle()) == "c:1"


def test_weighted_random_picker_follows_scores() -> None:
    picker = WeightedRandomPicker(rng=random.Random(3))
    counts = Counter(picker.pick({"a:1": 3.0, "b:1": 1.0}, EPS, cycle()) for _ in range(4000))
    assert set(counts) == {"a:1", "b:1"}
    assert counts["a:1"] / 4000 == pytest.approx(0.75, abs=0.05)


def test_weighted_random_picker_is_uniform_without_scores_and_seeded() -> None:
    a = [WeightedRandomPicker(rng=random.Random(5)).pick({}, EPS, cycle()) for _ in range(1)]
    picker1 = WeightedRandomPicker(rng=random.Random(5))
    picker2 = WeightedRandomPicker(rng=random.Random(5))
    seq1 = [picker1.pick({}, EPS, cycle()) for _ in range(50)]
    seq2 = [picker2.pick({}, list(reversed(EPS)), cycle()) for _ in range(50)]
    assert seq1 == seq2
    assert seq1[0] == a[0]
    assert set(seq1) == {"a:1", "b:1", "c:1", "d:1"}


def test_random_picker_is_seeded() -> None:
    p1, p2 = RandomPicker(rng=random.Random(9)), RandomPicker(rng=random.Random(9))
    assert [p1.pick({}, EPS, cycle()) for _ in range(20)] == \
        [p2.pick({"a:1": 9.0}, EPS, cycle()) for _ in range(20)]


def test_round_robin_picker_visits_in_turn() -> None:
    picker = RoundRobinPicker()
    picks = [picker.pick({"d:1": 9.0}, list(reversed(EPS)), cycle()) for _ in range(8)]
    assert picks == ["a:1", "b:1", "c:1", "d:1"] * 2

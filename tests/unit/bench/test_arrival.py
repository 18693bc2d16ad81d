from __future__ import annotations

import itertools

import pytest

from poolgate.bench.arrival import arrival_offsets


def test_constant_rate_is_evenly_spaced_from_zero() -> None:
    offsets = arrival_offsets("constant", 4.0, seed=0, count=5)
    assert offsets == pytest.approx([0.0, 0.25, 0.5, 0.75, 1.0])


def test_constant_rate_for_a_duration_stops_before_the_end() -> None:
    offsets = arrival_offsets("constant", 10.0, seed=0, duration=1.0)
    assert len(offsets) == 10
    assert offsets[-1] == pytest.approx(0.9)


def test_poisson_mean_rate_is_close_to_the_target() -> None:
    offsets = arrival_offsets("poisson", 50.0, seed=7, count=5000)
    achieved = (len(offsets) - 1) / offsets[-1]
    assert 45 < achieved < 55
    gaps = [b - a for a, b in itertools.pairwise(offsets)]
    assert all(g >= 0 for g in gaps)
    # Exponential gaps: the standard deviation is about the mean (constant gaps would give 0).
    mean = sum(gaps) / len(gaps)
    std = (sum((g - mean) ** 2 for g in gaps) / len(gaps)) ** 0.5
    assert 0.8 < std / mean < 1.2


def test_poisson_schedule_is_reproducible_and_seed_dependent() -> None:
    a = arrival_offsets("poisson", 5.0, seed=1, count=50)
    assert a == arrival_offsets("poisson", 5.0, seed=1, count=50)
    assert a != arrival_offsets("poisson", 5.0, seed=2, count=50)


def test_poisson_duration_keeps_only_arrivals_inside_it() -> None:
    offsets = arrival_offsets("poisson", 100.0, seed=3, duration=2.0)
    assert offsets[0] == 0.0
    assert offsets[-1] < 2.0
    assert 150 < len(offsets) < 250


def test_count_and_duration_are_exclusive() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        arrival_offsets("constant", 1.0, seed=0, count=1, duration=1.0)

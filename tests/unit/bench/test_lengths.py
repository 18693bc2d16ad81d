from __future__ import annotations

import random

import pytest

from poolgate.bench.errors import BenchError
from poolgate.bench.lengths import LengthSpec


@pytest.mark.parametrize(
    ("text", "kind", "a", "b"),
    [
        pytest.param("128", "fixed", 128, 128, id="fixed"),
        pytest.param("64:256", "uniform", 64, 256, id="uniform"),
        pytest.param("normal:100,20", "normal", 100, 20, id="normal"),
        pytest.param(" 7 ", "fixed", 7, 7, id="whitespace"),
    ],
)
def test_parse_accepts_each_form(text: str, kind: str, a: float, b: float) -> None:
    spec = LengthSpec.parse(text)
    assert (spec.kind, spec.a, spec.b) == (kind, a, b)
    assert LengthSpec.parse(str(spec)) == spec


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("0", id="zero"),
        pytest.param("abc", id="word"),
        pytest.param("10:5", id="reversed-range"),
        pytest.param("normal:0,1", id="mean-below-one"),
        pytest.param("normal:10", id="missing-std"),
        pytest.param("1:2:3", id="three-parts"),
    ],
)
def test_parse_rejects_bad_specs_with_a_clear_message(text: str) -> None:
    with pytest.raises(BenchError, match="length"):
        LengthSpec.parse(text)


def test_samples_stay_in_range_and_are_seeded() -> None:
    spec = LengthSpec.parse("10:20")
    a = [spec.sample(random.Random(1)) for _ in range(3)]
    b = [spec.sample(random.Random(1)) for _ in range(3)]
    assert a == b
    rng = random.Random(3)
    values = [spec.sample(rng) for _ in range(2000)]
    assert min(values) == 10 and max(values) == 20


def test_normal_samples_are_at_least_one_and_centred() -> None:
    spec = LengthSpec.parse("normal:50,40")
    rng = random.Random(5)
    values = [spec.sample(rng) for _ in range(5000)]
    assert min(values) >= 1
    assert 45 < sum(values) / len(values) < 60

from __future__ import annotations

import pytest

from poolgate.bench.stats import Distribution, percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        pytest.param([5.0], 99, 5.0, id="single"),
        pytest.param([1.0, 2.0, 3.0, 4.0], 50, 2.5, id="median-interpolates"),
        pytest.param([1.0, 2.0, 3.0, 4.0, 5.0], 50, 3.0, id="median-odd"),
        pytest.param([float(i) for i in range(1, 101)], 90, 90.1, id="p90-of-1-to-100"),
        pytest.param([float(i) for i in range(1, 101)], 99, 99.01, id="p99-of-1-to-100"),
        pytest.param([1.0, 2.0], 0, 1.0, id="p0-is-min"),
        pytest.param([1.0, 2.0], 100, 2.0, id="p100-is-max"),
    ],
)
def test_percentile_matches_linear_interpolation(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == pytest.approx(expected)


def test_percentile_rejects_empty_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="outside"):
        percentile([1.0], 101)


def test_distribution_sorts_its_input() -> None:
    d = Distribution.of([3.0, 1.0, 2.0, 4.0])
    assert (d.count, d.min, d.max) == (4, 1.0, 4.0)
    assert d.mean == pytest.approx(2.5)
    assert d.p50 == pytest.approx(2.5)


def test_distribution_of_nothing_has_no_values() -> None:
    d = Distribution.of([])
    assert d.count == 0
    assert d.to_dict() == {
        "count": 0, "mean": None, "p50": None, "p90": None, "p99": None, "min": None, "max": None
    }

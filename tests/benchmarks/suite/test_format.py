"""Number formatting of the report."""

from __future__ import annotations

from benchmarks.suite import _format as fmt


def test_units_and_missing() -> None:
    assert fmt.ms(0.0123) == "12.3 ms"
    assert fmt.ms(None) == "-"
    assert fmt.us(99.94) == "99.9 µs"
    assert fmt.us(250.4) == "250 µs"
    assert fmt.rate(1234.56, "tok/s") == "1,234.6 tok/s"
    assert fmt.pct(0.952) == "95.2%"
    assert fmt.ratio(1.654) == "1.65x"


def test_fraction_reads_small_ratios() -> None:
    assert fmt.fraction(111.8, 23954.3) == "1/214.3"
    assert fmt.fraction(3.0, 2.0) == "1.50x"
    assert fmt.fraction(0.0, 2.0) == "-"

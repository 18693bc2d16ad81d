"""Number formatting shared by the checks and the report (fixed units, '-' for missing)."""

from __future__ import annotations

MISSING = "-"


def ms(seconds: float | None, digits: int = 1) -> str:
    """Seconds as milliseconds."""
    return MISSING if seconds is None else f"{seconds * 1000:.{digits}f} ms"


def us(micro: float | None) -> str:
    """Microseconds, no decimals past 100."""
    if micro is None:
        return MISSING
    return f"{micro:.0f} µs" if micro >= 100 else f"{micro:.1f} µs"


def rate(value: float | None, unit: str) -> str:
    """A throughput such as `1234.5 tok/s`."""
    return MISSING if value is None else f"{value:,.1f} {unit}"


def pct(fraction: float | None) -> str:
    """A fraction as a percentage."""
    return MISSING if fraction is None else f"{fraction * 100:.1f}%"


def ratio(value: float | None) -> str:
    """A multiplier such as `3.20x`."""
    return MISSING if value is None else f"{value:.2f}x"


def fraction(part: float, whole: float) -> str:
    """`part` as a fraction of `whole`: `1/5.2` below one, `1.30x` above."""
    if whole <= 0 or part <= 0:
        return MISSING
    return f"1/{whole / part:.1f}" if part < whole else ratio(part / whole)

from __future__ import annotations

import pytest

from poolgate.api.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("10s", 10.0, id="seconds"),
        pytest.param("500ms", 0.5, id="milliseconds"),
        pytest.param("1h2m", 3720.0, id="hours-minutes"),
        pytest.param("1h2m3s4ms", 3723.004, id="four-parts"),
        pytest.param("0s", 0.0, id="zero"),
        pytest.param("99999ms", 99.999, id="five-digits"),
    ],
)
def test_parses_gateway_api_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("10", id="no-unit"),
        pytest.param("1.5s", id="fraction"),
        pytest.param("-1s", id="negative"),
        pytest.param("10 s", id="space"),
        pytest.param("1d", id="days"),
        pytest.param("100000s", id="six-digits"),
        pytest.param("1h1m1s1ms1s", id="five-parts"),
        pytest.param("", id="empty"),
        pytest.param("10S", id="upper-case"),
    ],
)
def test_rejects_anything_else_with_a_hint(text: str) -> None:
    with pytest.raises(ValueError, match="10s, 500ms, 1h2m"):
        parse_duration(text)

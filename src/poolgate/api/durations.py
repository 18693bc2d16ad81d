"""Gateway API durations (`10s`, `500ms`, `1h2m`, GEP-2257), parsed strictly into seconds."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import BeforeValidator

# GEP-2257: one to four (number, unit) pairs, each number at most 5 digits.
_DURATION = re.compile(r"^(?:[0-9]{1,5}(?:h|ms|m|s)){1,4}$")
_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a Gateway API duration such as `1h2m`, `10s` or `500ms`; ValueError otherwise."""
    if not isinstance(text, str) or not _DURATION.match(text):
        raise ValueError(
            f"invalid duration {text!r}: use Gateway API form, up to four number+unit pairs "
            "with units h, m, s, ms (for example 10s, 500ms, 1h2m)"
        )
    return sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))


def _validate(value: object) -> float:
    if not isinstance(value, str):
        raise ValueError(
            f"invalid duration {value!r}: durations are strings such as 10s, 500ms or 1h2m"
        )
    return parse_duration(value)


Duration = Annotated[float, BeforeValidator(_validate)]
"""A pydantic field type: a Gateway API duration string validated and converted to seconds."""

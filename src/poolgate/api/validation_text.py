"""Pydantic validation errors in plain words: `field.path[0]: reason (got value)`, one clause per
problem. The manifest loader positions each clause in its file; settings that come from
elsewhere (scheduler profiles, InferenceService specs) join them into one sentence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError


def plain_reason(err: Any, redact: bool = False) -> str:
    """Pydantic's reason in plain words, with the offending value for type errors (never when
    `redact`: a Secret's values)."""
    kind: str = err["type"]
    msg: str = err["msg"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if msg.startswith("Value error, "):
        return msg[len("Value error, "):]
    if msg.startswith("Assertion failed, "):
        return msg[len("Assertion failed, "):]
    if redact:
        return f"{msg[0].lower()}{msg[1:]}"
    value = err.get("input")
    if isinstance(value, str | int | float | bool) or value is None:
        return f"{msg[0].lower()}{msg[1:]} (got {value!r})"
    return f"{msg[0].lower()}{msg[1:]} (got a {type(value).__name__})"


def field_path(loc: Sequence[int | str]) -> str:
    """`("plugins", 0, "weight")` -> `plugins[0].weight`."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path


def describe_validation_error(exc: ValidationError, root: str = "") -> str:
    """Every problem as `path: reason`, joined with `; `; paths start at `root` (e.g. `spec`)."""
    clauses = []
    for err in exc.errors():
        path = field_path([root, *err["loc"]] if root else err["loc"])
        clauses.append(f"{path or '(document)'}: {plain_reason(err)}")
    return "; ".join(clauses)

"""Fields a manifest writes that poolgate's schemas do not define: typos, and upstream fields it
ignores. The loader reports them once per resource, for every kind."""

from __future__ import annotations

import difflib
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

from pydantic import BaseModel

from poolgate.api._base import ApiModel, Resource

# How close a written name must be to a known one to be suggested (difflib's ratio, 0..1).
FIELD_CUTOFF = 0.75

Loc = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class IgnoredField:
    """A field written in a manifest that poolgate ignores, and what to tell the user about it."""

    loc: Loc  # YAML keys and list indexes from the document's root: ("spec", "rules", 0, "x")
    message: str

    @property
    def path(self) -> str:
        """The field's path as written: `spec.rules[0].x`."""
        return field_path(self.loc)


def field_path(loc: Loc) -> str:
    """`("spec", "rules", 0, "x")` as `spec.rules[0].x`."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def closest(name: str, known: typing.Iterable[str], cutoff: float) -> str | None:
    """The known name closest to `name` (ignoring case), None when none is close enough."""
    by_lower = {k.lower(): k for k in known}
    match = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=cutoff)
    return by_lower[match[0]] if match else None


def ignored_fields(resource: Resource) -> list[IgnoredField]:
    """Every field under `resource` its schema does not define, except the upstream ones that have
    no bearing on poolgate (`INERT`), in document order of the models."""
    return list(_walk(resource, (), resource.kind))


def _walk(model: BaseModel, loc: Loc, kind: str) -> Iterator[IgnoredField]:
    cls = type(model)
    for name in model.model_extra or ():
        note = _note(cls, name, kind)
        if note is not None:
            yield IgnoredField((*loc, name), f"{field_path((*loc, name))} {note}")
    for attr, key in _nested_fields(cls):
        value = getattr(model, attr)
        if isinstance(value, BaseModel):
            yield from _walk(value, (*loc, key), kind)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, BaseModel):
                    yield from _walk(item, (*loc, key, i), kind)


def _note(cls: type[BaseModel], name: str, kind: str) -> str | None:
    inert = cls.INERT if issubclass(cls, ApiModel) else frozenset()
    not_acted_on = cls.NOT_ACTED_ON if issubclass(cls, ApiModel) else frozenset()
    if name in inert:
        return None
    if name in not_acted_on:
        return f"is a field of {kind} that poolgate does not act on; it is ignored"
    suggestion = closest(name, _known_names(cls), FIELD_CUTOFF)
    return ("is not a field poolgate supports; it is ignored"
            + (f" (did you mean {suggestion}?)" if suggestion else ""))


@cache
def _known_names(cls: type[BaseModel]) -> frozenset[str]:
    """Every name a field of `cls` may be written as: its aliases and its upstream-only fields."""
    names = {field.alias or attr for attr, field in cls.model_fields.items()}
    if issubclass(cls, ApiModel):
        names |= cls.NOT_ACTED_ON | cls.INERT
    return frozenset(names)


@cache
def _nested_fields(cls: type[BaseModel]) -> tuple[tuple[str, str], ...]:
    """(attribute, YAML key) of the fields of `cls` that may hold models (alone or in a list)."""
    return tuple(
        (attr, field.alias or attr) for attr, field in cls.model_fields.items()
        if _holds_model(field.annotation)
    )


def _holds_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_model(arg) for arg in typing.get_args(annotation))

"""YAML documents as nodes, for positions: the safe loader refusing repeated keys, and the line of
a field."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import yaml

try:
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

from poolgate.api.fields import Loc


@dataclass(frozen=True, slots=True)
class DuplicateKey:
    """A key written twice in one YAML mapping (YAML would silently keep the last value)."""

    key: str
    line: int  # 1-based, of the second occurrence
    first_line: int


_MERGE_TAG = "tag:yaml.org,2002:merge"


class DuplicateKeyCheck:
    """Mixin for a PyYAML loader (C or pure Python), first in its bases: notes the keys repeated
    in a mapping, in `duplicates`.

    The check runs where the constructor flattens each mapping, before `<<` merge keys are
    expanded (a key overriding a merged one is not a duplicate); a node is checked once, since a
    merged mapping is flattened again when it is constructed on its own.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)  # type: ignore[call-arg]
        self.duplicates: list[DuplicateKey] = []
        self._checked: set[int] = set()

    def flatten_mapping(self, node: yaml.MappingNode) -> None:
        pairs = node.value
        if len(pairs) > 1 and id(node) not in self._checked:
            self._checked.add(id(node))
            try:
                # Fast path, run on every mapping: distinct texts are distinct keys.
                unique = len({k.value for k, _ in pairs}) == len(pairs)
            except TypeError:  # a mapping or sequence as a key
                unique = False
            if not unique:
                self._note_duplicates(node)
        super().flatten_mapping(node)  # type: ignore[misc]

    def _note_duplicates(self, node: yaml.MappingNode) -> None:
        first: dict[tuple[str, str], int] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
                continue
            line = key.start_mark.line + 1
            if (key.tag, key.value) in first:
                self.duplicates.append(DuplicateKey(key.value, line, first[(key.tag, key.value)]))
            else:
                first[(key.tag, key.value)] = line


class Loader(DuplicateKeyCheck, _BaseLoader):
    """The safe YAML loader poolgate reads manifests with: libyaml's parser when available."""


def documents(text: str) -> Iterator[yaml.Node | None]:
    """YAML nodes of each document; None for an empty document. Raises yaml.YAMLError."""
    loader = Loader(text)
    try:
        while loader.check_node():
            yield loader.get_node()
    finally:
        loader.dispose()


def construct(node: yaml.Node) -> tuple[Any, list[DuplicateKey]]:
    """The document's data, and the keys written twice in any of its mappings."""
    loader = Loader("")
    try:
        return loader.construct_document(node), loader.duplicates
    finally:
        loader.dispose()


def key_line(node: yaml.Node, loc: Loc) -> int:
    """The line of the key (or list item) `loc` names; the deepest one found otherwise."""
    line = node.start_mark.line + 1
    current = node
    for part in loc:
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            found = next(((k, v) for k, v in current.value
                          if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            if found is None:
                break
            line, current = found[0].start_mark.line + 1, found[1]
        elif (isinstance(current, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(current.value)):
            current = current.value[part]
            line = current.start_mark.line + 1
        else:
            break
    return line


def locate(node: yaml.Node, loc: Loc, missing: bool) -> tuple[str, int]:
    """The field path (with YAML keys) and line for a pydantic error location."""
    path = ""
    current = node
    for i, part in enumerate(loc):
        if isinstance(current, yaml.MappingNode) and isinstance(part, str):
            for key, value in current.value:
                if isinstance(key, yaml.ScalarNode) and key.value == part:
                    current = value
                    path += f".{part}" if path else part
                    break
            else:
                if missing and i == len(loc) - 1:
                    path += f".{part}" if path else part
        elif (isinstance(current, yaml.SequenceNode) and isinstance(part, int)
              and 0 <= part < len(current.value)):
            current = current.value[part]
            path += f"[{part}]"
        # Anything else is a pydantic union/validator tag, not a YAML key: skip it.
    return path, current.start_mark.line + 1

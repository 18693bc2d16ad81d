"""Read multi-document YAML files and directories into typed resources, with positioned problems."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from poolgate.api._base import Resource
from poolgate.api._yaml import construct, documents, key_line, locate
from poolgate.api.fields import ignored_fields
from poolgate.api.kinds import (
    HELD_SCHEMAS,
    WARN_WHEN_SKIPPED_GROUPS,
    kind_hint,
    schema_for,
    split_api_version,
)
from poolgate.api.problems import Problem, Source
from poolgate.api.validation_text import plain_reason

log = logging.getLogger(__name__)

try:
    from yaml import CSafeDumper as _Dumper
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    from yaml import SafeDumper as _Dumper  # type: ignore[assignment]

MANIFEST_SUFFIXES = (".yaml", ".yml")
_MAX_ERRORS_PER_DOCUMENT = 20


@dataclass(frozen=True, slots=True)
class LoadedResource:
    """A validated resource and where it was read from."""

    resource: Resource
    source: Source


@dataclass(frozen=True, slots=True, eq=False)
class HeldDocument:
    """A document of a kind read only when referenced (`HELD_SCHEMAS`: Secret, ConfigMap), kept
    unvalidated until then; `validate_held` reads it."""

    api_version: str
    kind: str
    namespace: str
    name: str
    data: dict[str, Any]
    node: yaml.Node
    source: Source

    @property
    def key(self) -> str:
        """`namespace/name`."""
        return f"{self.namespace}/{self.name}"


@dataclass(slots=True)
class LoadedManifests:
    """Everything read from a set of paths: resources in file order, problems, skipped kinds,
    and the documents held until something references them."""

    resources: list[LoadedResource] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    held: list[HeldDocument] = field(default_factory=list)

    def extend(self, other: LoadedManifests) -> None:
        """Add everything `other` read, after what this one read."""
        self.resources.extend(other.resources)
        self.problems.extend(other.problems)
        self.skipped.update(other.skipped)
        self.held.extend(other.held)


def manifest_files(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """The YAML files named by `paths`: files as given, directories searched recursively (hidden
    files and folders skipped), sorted."""
    files: list[Path] = []
    problems: list[Problem] = []
    for path in paths:
        if path.is_dir():
            # Hidden entries are skipped: a Kubernetes ConfigMap volume holds every file twice more
            # under `..data/` and `..<timestamp>/`, which would load each resource three times.
            found = sorted(
                p for p in path.rglob("*")
                if p.is_file() and p.suffix in MANIFEST_SUFFIXES
                and not any(part.startswith(".") for part in p.relative_to(path).parts)
            )
            if not found:
                problems.append(Problem("warning", str(path), 0, None, None, None,
                                        "directory has no *.yaml or *.yml files"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem("error", str(path), 0, None, None, None,
                                    "no such file or directory"))
    return files, problems


def load_manifests(paths: Sequence[Path]) -> LoadedManifests:
    """Load every document under `paths`; documents with problems are left out of `resources`."""
    out = LoadedManifests()
    files, problems = manifest_files(paths)
    out.problems.extend(problems)
    for file in files:
        _load_file(file, out)
    return out


def load_object(obj: Mapping[str, Any], name: str) -> LoadedManifests:
    """Load one object read from the Kubernetes API, with the same validation as a file's
    document; `name` stands for the file in problems (which carry no line: there is no file).
    A ConfigMap read this way is only a ConfigMap (it carries no manifests)."""
    out = LoadedManifests()
    text = yaml.dump(dict(obj), Dumper=_Dumper, sort_keys=False)
    _load_text(text, name, out, carried=False)
    out.problems = [replace(p, line=None) for p in out.problems]
    return out


def _load_file(file: Path, out: LoadedManifests) -> None:
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        out.problems.append(Problem("error", name, 0, None, None, None, f"cannot read: {e}"))
        return
    _load_text(text, name, out)


def _load_text(text: str, name: str, out: LoadedManifests, carried: bool = True) -> None:
    """Load every document of `text`, read from `name`; `carried`: also the manifests a
    ConfigMap document carries."""
    index = 0
    try:
        for node in documents(text):
            index += 1
            if node is None:
                continue
            _load_document(node, Source(name, index, node.start_mark.line + 1), out, carried)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        reason = getattr(e, "problem", None) or str(e)
        out.problems.append(
            Problem("error", name, index + 1, line, None, None, f"invalid YAML: {reason}")
        )


def _load_document(node: yaml.Node, source: Source, out: LoadedManifests,
                   carried: bool = True) -> None:
    try:
        data, duplicates = construct(node)
    except yaml.YAMLError as e:
        # The reason without PyYAML's quoted source lines: they could be a Secret's.
        mark = getattr(e, "problem_mark", None)
        reason = getattr(e, "problem", None) or type(e).__name__
        out.problems.append(Problem.at("error", source, None, None, f"invalid YAML: {reason}",
                                       line=mark.line + 1 if mark is not None else None))
        return
    if duplicates:
        # Refused rather than read: which of the two values the author meant is unknown.
        out.problems.extend(Problem.at(
            "error", source, None, None,
            f"duplicate key {d.key!r} (first on line {d.first_line}); YAML would keep only the "
            "last value, so the document is not loaded", line=d.line,
        ) for d in duplicates)
        return
    if data is None:
        return
    if not isinstance(data, dict):
        out.problems.append(Problem.at(
            "error", source, None, None,
            f"a document must be a mapping with apiVersion and kind, not a {type(data).__name__}",
        ))
        return
    api_version, kind = data.get("apiVersion"), data.get("kind")
    metadata = data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    name = name if isinstance(name, str) else None
    if not isinstance(api_version, str) or not api_version or not isinstance(kind, str) or not kind:
        missing = [f for f, v in (("apiVersion", api_version), ("kind", kind))
                   if not isinstance(v, str) or not v]
        out.problems.append(Problem.at(
            "error", source, kind if isinstance(kind, str) else None, name,
            f"{' and '.join(missing)} missing or not a string",
        ))
        return
    schema = schema_for(api_version, kind)
    if isinstance(schema, str):
        out.problems.append(Problem.at("error", source, kind, name, schema))
    elif schema is None:
        _hold(api_version, kind, name, data, node, source, out)
        _skip(api_version, kind, name, Source(source.file, source.doc_index,
                                              key_line(node, ("kind",))), out)
        if carried and api_version == "v1" and kind == "ConfigMap":
            _load_carried_manifests(data, node, source, out)
    else:
        resource, problems = _validate(schema, data, node, source, kind, name)
        out.problems.extend(problems)
        if resource is not None:
            out.resources.append(LoadedResource(resource, source))


def _load_carried_manifests(data: dict[str, Any], node: yaml.Node, source: Source,
                            out: LoadedManifests) -> None:
    """Load the manifests a ConfigMap carries (how a cluster hands them to `poolgate serve`: each
    `*.yaml` / `*.yml` key a file of the mounted volume), as if they were files of their own: a
    value whose first document has `apiVersion` and `kind`. Problems point at the ConfigMap's
    file as `FILE#KEY`, with the line in FILE."""
    values = data.get("data")
    if not isinstance(values, dict) or not isinstance(node, yaml.MappingNode):
        return
    starts = _data_value_lines(node)
    for key, text in values.items():
        if not (isinstance(key, str) and isinstance(text, str)
                and key.endswith(MANIFEST_SUFFIXES) and _looks_like_manifests(text)):
            continue
        # Blank lines first, so that every mark in the value is the line in the outer file (a
        # block scalar's content starts on the line after its `|`).
        padded = "\n" * starts.get(key, 0) + text
        _load_text(padded, f"{source.file}#{key}", out)


def _data_value_lines(node: yaml.MappingNode) -> dict[str, int]:
    """For each key of the ConfigMap's `data`, the 0-based line its value's content starts on."""
    for key_node, value_node in node.value:
        if key_node.value == "data" and isinstance(value_node, yaml.MappingNode):
            return {k.value: v.start_mark.line + (1 if v.style in ("|", ">") else 0)
                    for k, v in value_node.value if isinstance(k, yaml.ScalarNode)}
    return {}


def _looks_like_manifests(text: str) -> bool:
    """Whether the first document of `text` is a mapping with `apiVersion` and `kind` (an
    unrelated YAML value, or one that does not parse, is left alone)."""
    try:
        first = next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError:
        return False
    return isinstance(first, dict) and "apiVersion" in first and "kind" in first


def _hold(api_version: str, kind: str, name: str | None, data: dict[str, Any], node: yaml.Node,
          source: Source, out: LoadedManifests) -> None:
    """Keep a document of a kind read only when referenced, for `validate_held`."""
    group, version = split_api_version(api_version)
    if name is None or version not in HELD_SCHEMAS.get((group, kind), {}):
        return
    namespace = data["metadata"].get("namespace")
    namespace = namespace if isinstance(namespace, str) and namespace else "default"
    out.held.append(HeldDocument(api_version, kind, namespace, name, data, node, source))


def validate_held(doc: HeldDocument) -> tuple[LoadedResource | None, list[Problem]]:
    """Validate a held document now that something references it. A Secret's values never
    appear in a problem (`redact`)."""
    group, version = split_api_version(doc.api_version)
    schema = HELD_SCHEMAS[(group, doc.kind)][version]
    resource, problems = _validate(schema, doc.data, doc.node, doc.source, doc.kind, doc.name,
                                   redact=doc.kind == "Secret")
    return (LoadedResource(resource, doc.source) if resource is not None else None), problems


def _skip(api_version: str, kind: str, name: str | None, source: Source,
          out: LoadedManifests) -> None:
    """Count a kind poolgate does not read; warn when it is probably a typo or expected to act
    (`source` gives the line of `kind`)."""
    out.skipped[kind] += 1
    hint = kind_hint(api_version, kind)
    if hint is not None:
        out.problems.append(Problem.at("warning", source, kind, name, hint))
    elif split_api_version(api_version)[0] in WARN_WHEN_SKIPPED_GROUPS:
        out.problems.append(Problem.at(
            "warning", source, kind, name,
            f"poolgate does not act on {api_version} {kind}; it is ignored",
        ))
    else:
        log.debug("%s (doc %d): skipping %s/%s", source.file, source.doc_index, kind, name)


def _validate(schema: type[Resource], data: dict[str, Any], node: yaml.Node, source: Source,
              kind: str, name: str | None, *, redact: bool = False
              ) -> tuple[Resource | None, list[Problem]]:
    """Validate one document against its schema: the resource (None on errors) and the
    problems; fields it does not define are warnings."""
    try:
        resource = schema.model_validate(data)
    except ValidationError as e:
        problems = []
        for err in e.errors()[:_MAX_ERRORS_PER_DOCUMENT]:
            path, line = locate(node, err["loc"], err["type"] == "missing")
            problems.append(Problem.at(
                "error", source, kind, name, f"{path or '(document)'}: {plain_reason(err, redact)}",
                line=line,
            ))
        return None, problems
    notes = [(key_line(node, ignored.loc), ignored.message) for ignored in ignored_fields(resource)]
    return resource, [Problem.at("warning", source, kind, name, message, line=line)
                      for line, message in sorted(notes)]

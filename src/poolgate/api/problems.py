"""Problems found while loading and resolving manifests, each pointing at a file and document."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Source:
    """Where a resource came from: file, 1-based document index, 1-based line (when known)."""

    file: str
    doc_index: int
    line: int | None


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with the manifests; `str()` gives `file:line (doc N, Kind/name): message`."""

    severity: Severity
    file: str
    doc_index: int
    line: int | None
    kind: str | None
    name: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        context = []
        if self.doc_index > 0:
            context.append(f"doc {self.doc_index}")
        if self.kind is not None:
            context.append(f"{self.kind}/{self.name}" if self.name else self.kind)
        if context:
            where += f" ({', '.join(context)})"
        return f"{where}: {self.message}"

    @classmethod
    def at(
        cls,
        severity: Severity,
        source: Source,
        kind: str | None,
        name: str | None,
        message: str,
        line: int | None = None,
    ) -> Problem:
        """A problem about a resource loaded from `source`; `line` overrides the document's line."""
        return cls(
            severity, source.file, source.doc_index, line if line is not None else source.line,
            kind, name, message,
        )

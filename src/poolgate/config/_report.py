"""Collects problems while resolving resources, each tied to the resource it is about."""

from __future__ import annotations

from poolgate.api.loader import LoadedResource
from poolgate.api.problems import Problem
from poolgate.config.outcomes import Outcomes


class Report:
    """An append-only list of problems found during one snapshot build, and the structured
    `outcomes` that a status writer reads."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.outcomes = Outcomes()

    def error(self, about: LoadedResource, message: str) -> None:
        """Record an error about `about` (the snapshot will not be built)."""
        self._add("error", about, message)

    def warning(self, about: LoadedResource, message: str) -> None:
        """Record a warning about `about` (the snapshot is still built)."""
        self._add("warning", about, message)

    def _add(self, severity: str, about: LoadedResource, message: str) -> None:
        r = about.resource
        self.problems.append(Problem.at(
            "error" if severity == "error" else "warning", about.source, r.kind, r.name, message,
        ))

    @property
    def has_errors(self) -> bool:
        """Whether any error was recorded."""
        return any(p.severity == "error" for p in self.problems)

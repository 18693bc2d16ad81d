"""Builders of suite rows and sections for the unit tests."""

from __future__ import annotations

from typing import Any

from benchmarks.suite.model import RunRow, Section


def row(name: str, kind: str = "poolgate", **fields: Any) -> RunRow:
    base: dict[str, Any] = {
        "requests": 100, "completed": 100, "errors": {}, "duration": 10.0,
        "request_throughput": 10.0, "output_throughput": 640.0,
    }
    base.update(fields)
    return RunRow(name=name, kind=kind, **base)


def section(name: str, rows: list[RunRow], **fields: Any) -> Section:
    base: dict[str, Any] = {"created_at": "2026-11-24T14:00:00+00:00", "duration_s": 12.0,
                            "settings": {"replicas": 8}, "commands": ["poolgate sim ..."]}
    base.update(fields)
    return Section(name=name, rows=rows, **base)

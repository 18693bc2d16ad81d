"""Where the suite keeps its results: one JSON per section and the PNG plots, beside the report."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.suite.model import Section

SECTION_NAMES = ("overhead", "routing", "pick", "multicluster", "peers-overhead", "peers-routing",
                 "epp-cost", "epp-routing", "capacity", "replicas", "saturation",
                 "saturation-profile", "precise")


def data_dir(report: Path) -> Path:
    """`docs/benchmarks/` for `docs/benchmarks.md`."""
    return report.with_suffix("")


def save_section(directory: Path, section: Section) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{section.name}.json"
    path.write_text(json.dumps(section.to_dict(), indent=1, sort_keys=False) + "\n")
    return path


def load_sections(directory: Path) -> dict[str, Section]:
    """Every section saved so far (unknown or unreadable files are ignored)."""
    found: dict[str, Section] = {}
    for name in SECTION_NAMES:
        path = directory / f"{name}.json"
        try:
            found[name] = Section.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def note_foreign_cpu(directory: Path, name: str, share: float | None) -> None:
    """Record in a saved section how much CPU other work used while it ran."""
    path = directory / f"{name}.json"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    data.setdefault("extra", {})["foreign_cpu_share"] = None if share is None else round(share, 3)
    path.write_text(json.dumps(data, indent=1) + "\n")

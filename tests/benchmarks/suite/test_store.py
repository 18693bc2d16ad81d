"""Saving and loading sections beside the report."""

from __future__ import annotations

from pathlib import Path

from benchmarks.suite.store import data_dir, load_sections, note_foreign_cpu, save_section
from tests.benchmarks.suite._rows import row, section


def test_data_dir_is_the_report_stem() -> None:
    assert data_dir(Path("docs/benchmarks.md")) == Path("docs/benchmarks")


def test_save_then_load(tmp_path: Path) -> None:
    sec = section("overhead", [row("direct", "direct", e2e_p50=0.01)])
    save_section(tmp_path, sec)
    (tmp_path / "routing.json").write_text("{not json")
    (tmp_path / "other.json").write_text("{}")
    assert load_sections(tmp_path) == {"overhead": sec}


def test_note_foreign_cpu_updates_a_saved_section(tmp_path: Path) -> None:
    save_section(tmp_path, section("pick", []))
    note_foreign_cpu(tmp_path, "pick", 0.12345)
    note_foreign_cpu(tmp_path, "missing", 0.5)  # nothing saved: nothing to note
    assert load_sections(tmp_path)["pick"].extra["foreign_cpu_share"] == 0.123

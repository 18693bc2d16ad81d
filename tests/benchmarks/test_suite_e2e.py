"""`python -m benchmarks.suite` smoke run: the overhead section against a real simulator and
the real gateway, a report written, and every process it started gone afterwards."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

# The suite is run as `python -m benchmarks.suite` from the repository root; this run's working
# directory is elsewhere, so the root goes on the child's import path.
REPO = Path(__file__).resolve().parents[2]


def _processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (read-only look at /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(int(entry.name))
    return found


def test_quick_overhead_section_writes_report_and_stops_its_processes(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    out = tmp_path / "docs" / "benchmarks.md"
    suite = procs.start(
        [sys.executable, "-m", "benchmarks.suite", "--only", "overhead", "--quick",
         "--out", str(out), "--keep-logs", "--peers-venv", str(tmp_path / "no-peers")],
        env={"PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))},
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 90
    while suite.proc.poll() is None:
        assert time.monotonic() < deadline, suite.output()
        time.sleep(0.1)
    log = suite.output()
    assert suite.proc.returncode == 0, log

    data = json.loads((tmp_path / "docs" / "benchmarks" / "overhead.json").read_text())
    rows = {r["name"]: r for r in data["rows"]}
    assert set(rows) >= {"direct", "poolgate", "direct (c=1)", "poolgate (c=1)"}, log
    for r in rows.values():
        assert r["completed"] == r["requests"] > 0, r
        assert r["errors"] == {}
    assert rows["poolgate"]["cpu_us_per_request"] > 0
    assert rows["direct"]["cpu_us_per_request"] is None  # nothing in front to measure
    assert any("poolgate serve" in c for c in data["commands"])

    report = out.read_text()
    assert "## 1. Gateway overhead (issue 3)" in report
    assert re.search(r"\| poolgate \| \d+ \| [\d,.]+ req/s \|", report)
    assert "gateway CPU per request" in report
    assert "Not measured yet: run `python -m benchmarks.suite --only routing`" in report

    logs = re.search(r"process logs: (\S+)", log)
    assert logs is not None, log
    try:
        assert _processes_mentioning(logs.group(1)) == []
    finally:
        shutil.rmtree(logs.group(1), ignore_errors=True)

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.bench.plot import plot

from ._builders import rec, result


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    path = tmp_path / "cmp.png"
    plot([result("a"), result("b", [rec(0, ttft=0.3), rec(1, ttft=0.4)])], path)
    assert path.read_bytes().startswith(b"\x89PNG")

from __future__ import annotations

import io

from rich.console import Console

from poolgate.bench.table import summary_table

from ._builders import rec, result


def render(*results: object) -> str:
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(summary_table(list(results)))  # type: ignore[arg-type]
    return out.getvalue()


def test_single_run_table_shows_headline_rows_and_hides_empty_ones() -> None:
    text = render(result("gw"))
    assert "gw" in text
    assert "TTFT p99 (ms)" in text and "100.00" in text
    assert "prefix cache hit rate (%)" in text and "50.0" in text
    assert "target CPU" not in text  # no --cpu-pid, no row
    assert "errors" not in text


def test_comparison_adds_a_ratio_column_and_errors() -> None:
    slow = result("b", [rec(0, ttft=0.2), rec(1, ttft=0.2, error="http_503", status=503)])
    text = render(result("a"), slow)
    assert "b/a" in text
    assert "2.00x" in text  # TTFT doubled
    assert "http_503: 1" in text

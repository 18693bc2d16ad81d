"""The rich summary table: one column per run, plus a ratio to the first run when comparing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rich.table import Table

from poolgate.bench.result import BenchResult
from poolgate.bench.stats import Distribution
from poolgate.bench.summary import Summary


@dataclass(frozen=True, slots=True)
class Row:
    """One table row: a label, how to get the number, how to print it."""

    label: str
    value: Callable[[Summary], float | None]
    fmt: str  # format spec for the number


def _ms(pick: Callable[[Summary], Distribution], stat: str) -> Callable[[Summary], float | None]:
    def get(s: Summary) -> float | None:
        v: float | None = getattr(pick(s), stat)
        return None if v is None else v * 1000

    return get


def _pct(s: Summary) -> float | None:
    return None if s.prefix_cache_hit_rate is None else s.prefix_cache_hit_rate * 100


ROWS: tuple[Row, ...] = (
    Row("requests completed", lambda s: s.completed, ".0f"),
    Row("requests failed", lambda s: s.failed, ".0f"),
    Row("duration (s)", lambda s: s.duration, ".2f"),
    Row("requests/s", lambda s: s.request_throughput, ".2f"),
    Row("output tokens/s", lambda s: s.output_throughput, ".1f"),
    Row("prefix cache hit rate (%)", _pct, ".1f"),
    *(
        Row(f"{name} {stat} (ms)", _ms(pick, stat), ".2f")
        for name, pick in (
            ("TTFT", lambda s: s.ttft),
            ("TPOT", lambda s: s.tpot),
            ("ITL", lambda s: s.itl),
            ("E2E", lambda s: s.e2e),
        )
        for stat in ("mean", "p50", "p90", "p99")
    ),
    Row("scheduler lateness p99 (ms)", _ms(lambda s: s.lateness, "p99"), ".2f"),
    Row("scheduler lateness max (ms)", _ms(lambda s: s.lateness, "max"), ".2f"),
    Row("target CPU per request (µs)", lambda s: s.cpu.us_per_request if s.cpu else None, ".1f"),
    Row("waiting queue mean", lambda s: s.queue.mean_waiting if s.queue else None, ".2f"),
    Row("waiting queue max", lambda s: s.queue.max_waiting if s.queue else None, ".0f"),
    Row("worst max/mean waiting", lambda s: s.queue.worst_max_to_mean if s.queue else None, ".2f"),
)


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return "-"
    return f"{value / base:.2f}x"


def summary_table(results: Sequence[BenchResult]) -> Table:
    """A table of every run's headline numbers (rows without any value are left out)."""
    summaries = [r.summary() for r in results]
    table = Table(title="poolgate bench", title_justify="left")
    table.add_column("metric")
    for i, r in enumerate(results):
        table.add_column(r.target.name, justify="right")
        if i > 0:
            table.add_column(f"{r.target.name}/{results[0].target.name}", justify="right", style="dim")
    for row in ROWS:
        values = [row.value(s) for s in summaries]
        if all(v is None for v in values):
            continue
        cells = [row.label]
        for i, v in enumerate(values):
            cells.append(_cell(v, row.fmt))
            if i > 0:
                cells.append(_ratio(v, values[0]))
        table.add_row(*cells)
    errors = [", ".join(f"{k}: {n}" for k, n in s.errors.items()) or "-" for s in summaries]
    if any(e != "-" for e in errors):
        cells = ["errors"]
        for i, e in enumerate(errors):
            cells.append(e)
            if i > 0:
                cells.append("")
        table.add_row(*cells)
    return table

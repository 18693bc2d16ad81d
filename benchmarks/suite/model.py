"""The suite's results as plain data: one row per benchmarked target, one section per experiment.

Sections are saved as JSON under `docs/benchmarks/` and the report is rendered from those files
alone, so `--only pick` refreshes one section and keeps the others as they were measured.
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass, field
from typing import Any

from poolgate.bench.result import BenchResult

# A replica's waiting queue counts as unbalanced only above this many requests as well as above
# 2x the round's mean: one waiting request next to a mean of 0.25 is noise, not imbalance.
QUEUE_FLOOR = 2.0


@dataclass(frozen=True, slots=True)
class RunRow:
    """The headline numbers of one benchmarked target (seconds, tokens/s, µs)."""

    name: str
    kind: str  # "direct", "poolgate" or "peer"
    requests: int
    completed: int
    errors: dict[str, int]
    duration: float
    request_throughput: float
    output_throughput: float
    ttft_p50: float | None = None
    ttft_p90: float | None = None
    ttft_p99: float | None = None
    e2e_p50: float | None = None
    e2e_p90: float | None = None
    e2e_p99: float | None = None
    lateness_p99: float | None = None
    prefix_cache_hit_rate: float | None = None
    cpu_us_per_request: float | None = None
    queue_mean: float | None = None
    queue_max: float | None = None
    queue_worst_max_to_mean: float | None = None
    queue_rounds: int = 0
    queue_rounds_above_2x: int = 0
    queue_rounds_above_2x_floor: int = 0
    command: str = ""

    @classmethod
    def of(cls, name: str, kind: str, result: BenchResult, command: str = "") -> RunRow:
        """The row of `result`, named `name` in tables."""
        s = result.summary()
        q = s.queue
        return cls(
            name=name, kind=kind, requests=s.requests, completed=s.completed,
            errors=dict(s.errors), duration=s.duration,
            request_throughput=s.request_throughput, output_throughput=s.output_throughput,
            ttft_p50=s.ttft.p50, ttft_p90=s.ttft.p90, ttft_p99=s.ttft.p99,
            e2e_p50=s.e2e.p50, e2e_p90=s.e2e.p90, e2e_p99=s.e2e.p99,
            lateness_p99=s.lateness.p99, prefix_cache_hit_rate=s.prefix_cache_hit_rate,
            cpu_us_per_request=s.cpu.us_per_request if s.cpu else None,
            queue_mean=q.mean_waiting if q else None,
            queue_max=q.max_waiting if q else None,
            queue_worst_max_to_mean=q.worst_max_to_mean if q else None,
            queue_rounds=len(q.rounds) if q else 0,
            queue_rounds_above_2x=q.rounds_above(2.0) if q else 0,
            queue_rounds_above_2x_floor=q.rounds_above(2.0, floor=QUEUE_FLOOR) if q else 0,
            command=command,
        )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunRow:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


# Counts that add up over rounds (the other figures of a median row are medians).
_SUMMED = ("requests", "completed", "duration")


def median_row(rows: list[RunRow]) -> RunRow:
    """One row for several rounds of the same run: the median of every measured figure (over the
    rounds that have it), and the totals of requests, completions, errors and duration."""
    if not rows:
        raise ValueError("median_row needs at least one row")
    first = rows[0]
    if len(rows) == 1:
        return first
    errors: dict[str, int] = {}
    for r in rows:
        for status, n in r.errors.items():
            errors[status] = errors.get(status, 0) + n
    medians: dict[str, Any] = {}
    for f in dataclasses.fields(RunRow):
        if f.name in _SUMMED or f.name in ("name", "kind", "errors", "command"):
            continue
        values = [v for r in rows if (v := getattr(r, f.name)) is not None]
        if not values:
            medians[f.name] = None
            continue
        middle = statistics.median(values)
        medians[f.name] = round(middle) if isinstance(values[0], int) else middle
    return dataclasses.replace(
        first, errors=errors, **{n: sum(getattr(r, n) for r in rows) for n in _SUMMED}, **medians)



@dataclass(frozen=True, slots=True)
class Section:
    """One experiment: its settings, the exact commands it ran, its rows and any notes."""

    name: str  # "overhead", "routing", "pick", "multicluster", "peers-overhead" or "peers-routing"
    created_at: str
    duration_s: float
    settings: dict[str, Any]
    commands: list[str]
    rows: list[RunRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    plot: str | None = None  # file name of the PNG beside the JSON

    def row(self, name: str) -> RunRow | None:
        """The row called `name`, if that run happened."""
        return next((r for r in self.rows if r.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Section:
        return cls(
            name=str(data["name"]), created_at=str(data["created_at"]),
            duration_s=float(data.get("duration_s", 0.0)),
            settings=dict(data.get("settings", {})), commands=list(data.get("commands", [])),
            rows=[RunRow.from_dict(r) for r in data.get("rows", [])],
            notes=list(data.get("notes", [])), extra=dict(data.get("extra", {})),
            plot=data.get("plot"),
        )


@dataclass(frozen=True, slots=True)
class Check:
    """One target of an issue against its measurement; `passed` is None when not measured."""

    what: str
    target: str
    measured: str
    passed: bool | None

    @property
    def verdict(self) -> str:
        return "n/a" if self.passed is None else ("PASS" if self.passed else "MISS")

"""The capacity section's decisions as plain data: whether one trial met the target, which rate
to try next, and a saturated replica's throughput.

A trial passes when every request was answered, the TTFT p90 is under the target, and the front
kept up with the arrivals. "Kept up" is judged from the backlog left at the end: a request that
arrives at t finishes at about t + (its own e2e), so a front that serves the offered rate sends
its last response about one median e2e after the last arrival; a front that falls behind still
owes its backlog then. The excess, last response - last arrival - median e2e, may be at most
`KEEP_UP_SLACK` of the arrival window (a backlog of at most 5 % of the trial's work).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from poolgate.bench.records import RequestRecord

TTFT_P90_TARGET = 0.5  # seconds, issue 17 item 3
KEEP_UP_SLACK = 0.05  # share of the arrival window the backlog may take to drain


@dataclass(frozen=True, slots=True)
class Verdict:
    """One trial judged: the figures the decision used and, when it failed, why."""

    rate: float
    passed: bool
    ttft_p90: float | None
    drain_excess: float | None  # seconds past last arrival + median e2e
    window: float  # seconds from the first to the last arrival
    failed: int
    reason: str  # "" when passed

    def to_dict(self) -> dict[str, float | bool | str | int | None]:
        return {"rate": self.rate, "passed": self.passed, "ttft_p90": self.ttft_p90,
                "drain_excess": self.drain_excess, "window": self.window,
                "failed": self.failed, "reason": self.reason}


def drain_excess(records: Sequence[RequestRecord]) -> tuple[float | None, float]:
    """(last response - last arrival - median e2e, arrival window) of a run's records, in
    seconds; the excess is None when nothing completed."""
    if not records:
        return None, 0.0
    window = max(r.scheduled for r in records) - min(r.scheduled for r in records)
    e2es = [r.e2e for r in records if r.ok and r.e2e is not None]
    if not e2es:
        return None, window
    last_arrival = max(r.scheduled for r in records)
    last_finish = max(r.finished for r in records)
    return last_finish - last_arrival - statistics.median(e2es), window


def judge(rate: float, records: Sequence[RequestRecord], ttft_p90: float | None,
          target: float = TTFT_P90_TARGET, slack: float = KEEP_UP_SLACK) -> Verdict:
    """Whether a trial at `rate` met the target: no failed request, TTFT p90 under `target`,
    and a backlog at the end of at most `slack` of the arrival window."""
    failed = sum(1 for r in records if not r.ok)
    excess, window = drain_excess(records)
    reasons = []
    if not records:
        reasons.append("no request was sent")
    if failed:
        reasons.append(f"{failed} of {len(records)} requests failed")
    if ttft_p90 is None:
        reasons.append("no TTFT measured")
    elif ttft_p90 >= target:
        reasons.append(f"TTFT p90 {ttft_p90 * 1000:.0f} ms")
    if excess is not None and excess > slack * window:
        reasons.append(f"fell behind: the last response came {excess:.1f} s after the last "
                       f"arrival plus a median e2e (allowed {slack * window:.2f} s)")
    return Verdict(rate, not reasons, ttft_p90, excess, window, failed, "; ".join(reasons))


@dataclass
class RateSearch:
    """The highest rate that passes, to within `resolution`: grow from `start` by `growth` until
    a trial fails (never above `cap`), then bisect between the highest pass and the lowest
    failure. If `start` fails, shrink by `growth` instead, down to `resolution`.

    Rates stay on multiples of `resolution` when `start` and `cap` are on them (and `growth` is
    a whole number), so the bisection ends with the highest pass exactly one step below the
    lowest failure. It assumes a front that passes a rate passes every lower one; trials are
    noisy, so the trials are kept for the reader (`trials`)."""

    start: float
    resolution: float
    cap: float
    growth: float = 2.0
    passed_at: float | None = None  # highest rate that passed
    failed_at: float | None = None  # lowest rate that failed
    trials: list[tuple[float, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not (self.resolution > 0 and self.start >= self.resolution and self.cap >= self.start
                and self.growth > 1):
            raise ValueError("need 0 < resolution <= start <= cap and growth > 1")

    def next_rate(self) -> float | None:
        """The rate of the next trial, or None when the search is over."""
        lo, hi = self.passed_at, self.failed_at
        if lo is None and hi is None:
            return self.start
        if hi is None:
            assert lo is not None
            return None if lo >= self.cap else min(self._grid(lo * self.growth), self.cap)
        if lo is None:
            lower = self._grid(hi / self.growth)
            return lower if lower >= self.resolution and lower < hi else None
        steps = math.floor((hi - lo) / self.resolution + 1e-9)
        if steps <= 1:
            return None
        return lo + (steps // 2) * self.resolution

    def record(self, rate: float, passed: bool) -> None:
        """The outcome of the trial at `rate` (the one `next_rate` proposed)."""
        self.trials.append((rate, passed))
        if passed:
            self.passed_at = rate if self.passed_at is None else max(self.passed_at, rate)
        else:
            self.failed_at = rate if self.failed_at is None else min(self.failed_at, rate)

    @property
    def done(self) -> bool:
        return self.next_rate() is None

    @property
    def reached_cap(self) -> bool:
        """Whether the search passed at its cap (the front's capacity is at least the cap)."""
        return self.passed_at is not None and self.passed_at >= self.cap

    def _grid(self, value: float) -> float:
        """`value` rounded down to a multiple of the resolution."""
        return math.floor(value / self.resolution + 1e-9) * self.resolution


def grid_up(value: float, resolution: float) -> float:
    """`value` rounded up to a multiple of `resolution`."""
    return math.ceil(value / resolution - 1e-9) * resolution


def token_times(record: RequestRecord) -> list[float]:
    """When each streamed token of `record` arrived, in seconds from the start of the run."""
    if record.ttft is None:
        return []
    t = record.sent + record.ttft
    times = [t]
    for gap in record.itl:
        t += gap
        times.append(t)
    return times


def saturated_throughput(records: Sequence[RequestRecord], start: float,
                         end: float) -> float | None:
    """Requests/s a saturated server completes, from the tokens it streamed between `start` and
    `end` (seconds from the start of the run, while it was kept saturated) divided by the tokens
    of a request. Counting completed requests instead would be off by up to a whole batch:
    requests that start in the same engine step finish in the same step, so completions come
    in bursts, while tokens come every step."""
    done = [r for r in records if r.ok and r.ttft is not None]
    if not done or end <= start:
        return None
    per_request = statistics.fmean(len(r.itl) + 1 for r in done)
    in_window = sum(1 for r in done for t in token_times(r) if start <= t <= end)
    return in_window / (end - start) / per_request

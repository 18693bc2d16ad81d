"""The capacity section's decisions as plain data: whether one trial met the target, which rate
to try next, and a saturated replica's throughput.

A trial passes when every request was answered, the TTFT p90 is under the target, and the front
kept up with the arrivals: its responses were completed at no less than `MIN_KEEP_UP` of the
rate the requests arrived at, each rate taken from the first to the last event (arrivals, then
completions). A front that serves the offered load completes requests as they arrived, shifted
by their service time, so the two spans match to within the spread of the e2e; one that falls
behind stretches its completions over a longer span by the share it lacks.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field

from poolgate.bench.records import RequestRecord
from poolgate.sim.profiles import Profile

TTFT_P90_TARGET = 0.5  # seconds, issue 17 item 3
# Completions must come at this share of the arrival rate at least. The e2e of the first and
# last requests differ by a few hundred ms on this fleet (batch size, a queued request), about
# 2-5 % of a 10-20 s trial, so a tighter bound would fail fronts that keep up.
MIN_KEEP_UP = 0.9


@dataclass(frozen=True, slots=True)
class Verdict:
    """One trial judged: the figures the decision used and, when it failed, why."""

    rate: float
    passed: bool
    ttft_p90: float | None
    keep_up: float | None  # completion rate / arrival rate
    failed: int
    reason: str  # "" when passed

    def to_dict(self) -> dict[str, float | bool | str | int | None]:
        return {"rate": self.rate, "passed": self.passed, "ttft_p90": self.ttft_p90,
                "keep_up": self.keep_up, "failed": self.failed, "reason": self.reason}


def keep_up(records: Sequence[RequestRecord]) -> float | None:
    """Completion rate over arrival rate: (completed - 1) / (last - first completion) against
    (sent - 1) / (last - first arrival); None with fewer than two of either."""
    arrivals = [r.scheduled for r in records]
    done = [r.finished for r in records if r.ok]
    if len(arrivals) < 2 or len(done) < 2:
        return None
    arrival_span, done_span = max(arrivals) - min(arrivals), max(done) - min(done)
    if arrival_span <= 0 or done_span <= 0:
        return None
    return ((len(done) - 1) / done_span) / ((len(arrivals) - 1) / arrival_span)


def judge(rate: float, records: Sequence[RequestRecord], ttft_p90: float | None,
          target: float = TTFT_P90_TARGET, min_keep_up: float = MIN_KEEP_UP) -> Verdict:
    """Whether a trial at `rate` met the target: no failed request, TTFT p90 under `target`,
    and completions at `min_keep_up` of the arrival rate or more."""
    failed = sum(1 for r in records if not r.ok)
    kept = keep_up(records)
    reasons = []
    if not records:
        reasons.append("no request was sent")
    if failed:
        reasons.append(f"{failed} of {len(records)} requests failed")
    if ttft_p90 is None:
        reasons.append("no TTFT measured")
    elif ttft_p90 >= target:
        reasons.append(f"TTFT p90 {ttft_p90 * 1000:.0f} ms")
    if kept is not None and kept < min_keep_up:
        reasons.append(f"fell behind: completions at {kept:.0%} of the arrival rate")
    return Verdict(rate, not reasons, ttft_p90, kept, failed, "; ".join(reasons))


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


def replica_bound(profile: Profile, slots: int, time_scale: float, output_len: int,
                  uncached_tokens: float) -> float:
    """Requests/s of wall-clock time one simulated replica completes with every batch slot busy,
    from the simulator's step-time model: a batch of `slots` requests takes `output_len` decode
    steps at a full batch, plus the prefill of each request's uncached prompt tokens (on a
    cached prefix: the question and the partial last block)."""
    cycle = (output_len * profile.step_time(slots, 0)
             + slots * uncached_tokens * profile.prefill_per_token)
    return slots * time_scale / cycle

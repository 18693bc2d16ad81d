"""The last minutes of traffic, second by second, for the status page and `poolgate top`.

`LiveWindow` is a ring of per-second slots allocated once: requests answered, 5xx answers,
429 answers, time to first token (a small histogram per second, for percentiles) and the
requests each endpoint served (for per-endpoint rates and per-region shares). `record` runs once
per finished request on the event loop: O(1), no allocation but a new endpoint's first count in
a second. Readers (`series`, `summary`, `served`) go over the ring when the page polls.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_WINDOW_SECONDS = 300

# Upper bounds (seconds) of the time-to-first-token buckets; the last slot is everything above.
TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
                1.5, 2.0, 3.0, 5.0, 7.5, 10.0, 20.0, 30.0, 60.0)


class _Second:
    """One second's counters; reused when the ring comes round to it again."""

    __slots__ = ("endpoints", "errors", "requests", "second", "throttled", "ttft", "ttft_count",
                 "ttft_sum")

    def __init__(self) -> None:
        self.second = -1
        self.requests = 0
        self.errors = 0
        self.throttled = 0
        self.ttft_count = 0
        self.ttft_sum = 0.0
        self.ttft = [0] * (len(TTFT_BUCKETS) + 1)
        self.endpoints: dict[str, int] = {}

    def reset(self, second: int) -> None:
        self.second = second
        self.requests = self.errors = self.throttled = self.ttft_count = 0
        self.ttft_sum = 0.0
        ttft = self.ttft
        for i in range(len(ttft)):
            ttft[i] = 0
        self.endpoints.clear()


@dataclass(frozen=True, slots=True)
class Series:
    """Per-second values of the last `len(requests)` seconds, oldest first, ending at `end`
    (the whole second of the read). TTFT percentiles are None for a second without a sample."""

    end: int
    requests: list[int]
    errors: list[int]
    throttled: list[int]
    ttft_p50: list[float | None]
    ttft_p95: list[float | None]


@dataclass(frozen=True, slots=True)
class Summary:
    """Totals over the last `seconds` seconds: rates per second and TTFT percentiles."""

    seconds: int
    requests: int
    rate: float
    error_rate: float  # 5xx answers per second
    throttled_rate: float  # 429 answers per second
    ttft_p50: float | None
    ttft_p95: float | None
    ttft_mean: float | None


class LiveWindow:
    """Per-second request counters over the last `seconds` seconds (see the module docstring)."""

    __slots__ = ("_slots", "seconds")

    def __init__(self, seconds: int = DEFAULT_WINDOW_SECONDS) -> None:
        if seconds < 1:
            raise ValueError(f"the window is at least one second long, got {seconds}")
        self.seconds = seconds
        self._slots = [_Second() for _ in range(seconds)]

    def record(self, now: float, status: int, ttft: float | None, endpoint: str | None) -> None:
        """A request finished at monotonic time `now` with `status` (0: nothing was answered),
        `ttft` seconds to its first token (None when none came) and served by `endpoint`."""
        second = int(now)
        slot = self._slots[second % self.seconds]
        if slot.second != second:
            slot.reset(second)
        slot.requests += 1
        if status >= 500:
            slot.errors += 1
        elif status == 429:
            slot.throttled += 1
        if ttft is not None:
            slot.ttft_count += 1
            slot.ttft_sum += ttft
            slot.ttft[bisect_left(TTFT_BUCKETS, ttft)] += 1
        if endpoint is not None:
            endpoints = slot.endpoints
            endpoints[endpoint] = endpoints.get(endpoint, 0) + 1

    def _recent(self, now: float, seconds: int) -> list[_Second | None]:
        """The slots of the last `seconds` whole seconds up to `now`, oldest first (None for
        a second nothing finished in)."""
        end = int(now)
        slots, size = self._slots, self.seconds
        out: list[_Second | None] = []
        for second in range(end - min(seconds, size) + 1, end + 1):
            slot = slots[second % size]
            out.append(slot if slot.second == second else None)
        return out

    def series(self, now: float, seconds: int | None = None) -> Series:
        """Per-second values of the last `seconds` (default: the whole window) up to `now`."""
        recent = self._recent(now, seconds or self.seconds)
        return Series(
            end=int(now),
            requests=[s.requests if s else 0 for s in recent],
            errors=[s.errors if s else 0 for s in recent],
            throttled=[s.throttled if s else 0 for s in recent],
            ttft_p50=[_quantile(s.ttft, s.ttft_count, 0.5) if s else None for s in recent],
            ttft_p95=[_quantile(s.ttft, s.ttft_count, 0.95) if s else None for s in recent],
        )

    def summary(self, now: float, seconds: int = 60) -> Summary:
        """Totals over the last `seconds` up to `now` (the current second included)."""
        recent = [s for s in self._recent(now, seconds) if s is not None]
        span = min(seconds, self.seconds)
        requests = sum(s.requests for s in recent)
        count = sum(s.ttft_count for s in recent)
        buckets = [sum(col) for col in zip(*(s.ttft for s in recent), strict=True)] \
            if recent else []
        return Summary(
            seconds=span, requests=requests, rate=requests / span,
            error_rate=sum(s.errors for s in recent) / span,
            throttled_rate=sum(s.throttled for s in recent) / span,
            ttft_p50=_quantile(buckets, count, 0.5), ttft_p95=_quantile(buckets, count, 0.95),
            ttft_mean=sum(s.ttft_sum for s in recent) / count if count else None,
        )

    def served(self, now: float, seconds: int = 60) -> dict[str, int]:
        """Requests each endpoint served in the last `seconds` up to `now`."""
        out: dict[str, int] = {}
        for slot in self._recent(now, seconds):
            if slot is not None:
                for endpoint, n in slot.endpoints.items():
                    out[endpoint] = out.get(endpoint, 0) + n
        return out


def _quantile(buckets: Sequence[int], count: int, q: float) -> float | None:
    """The `q` quantile of a `TTFT_BUCKETS` histogram, interpolated inside its bucket (the
    overflow bucket reports its lower bound); None without samples."""
    if count <= 0:
        return None
    rank = q * count
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            lower = TTFT_BUCKETS[i - 1] if i > 0 else 0.0
            if i == len(TTFT_BUCKETS):
                return lower
            return lower + (TTFT_BUCKETS[i] - lower) * (rank - seen) / n
        seen += n
    return TTFT_BUCKETS[-1]

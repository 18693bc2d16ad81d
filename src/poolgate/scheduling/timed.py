"""A scheduler that times itself into the Inference Extension's latency histograms
(`poolgate.observability.scheduling`): every pick end to end, and one pick in
`PLUGIN_SAMPLE` plugin by plugin.

The per-plugin timing runs the same profile with each plugin wrapped in a timer, swapped in
for that one pick, so the picks that are not sampled pay nothing for it. Sampling keeps the
distribution (what the latency panels read) and makes the count of
`inference_extension_plugin_duration_seconds` the number of sampled picks, not of all picks
(docs/metrics.md). The plugins do not know they are timed.
"""

from __future__ import annotations

from collections.abc import Sequence
from time import perf_counter

from poolgate.datalayer.store import EndpointStore
from poolgate.observability.histogram import Histogram
from poolgate.observability.scheduling import FILTER, PICKER, SCORER, SchedulerTimings
from poolgate.scheduling.interfaces import (
    Category,
    CycleState,
    Endpoint,
    Filter,
    LLMRequest,
    Picker,
    PickResult,
    Scorer,
    WeightedScorer,
)
from poolgate.scheduling.scheduler import Scheduler, SchedulerProfile

# One pick in this many is timed plugin by plugin.
PLUGIN_SAMPLE = 16


class TimedScheduler(Scheduler):
    """`Scheduler` plus its latency metrics (see the module docstring)."""

    def __init__(self, profile: SchedulerProfile, store: EndpointStore, staleness: float,
                 timings: SchedulerTimings) -> None:
        super().__init__(profile, store, staleness=staleness)
        self._e2e = timings.e2e
        self._plain = profile
        self._timed = _timed_profile(profile, timings)
        self._picks = 0

    def pick(self, request: LLMRequest, endpoints: Sequence[str], now: float) -> PickResult:
        start = perf_counter()
        self._picks += 1
        if self._picks % PLUGIN_SAMPLE:
            try:
                return super().pick(request, endpoints, now)
            finally:
                self._e2e.observe(perf_counter() - start)
        self.profile = self._timed
        try:
            return super().pick(request, endpoints, now)
        finally:
            self.profile = self._plain
            self._e2e.observe(perf_counter() - start)


def _timed_profile(profile: SchedulerProfile, timings: SchedulerTimings) -> SchedulerProfile:
    def hist(point: str, plugin: Filter | Scorer | Picker) -> Histogram:
        return timings.plugin(point, plugin.typed_name.type, plugin.typed_name.name)

    return SchedulerProfile(
        profile.name,
        tuple(_TimedFilter(f, hist(FILTER, f)) for f in profile.filters),
        tuple(WeightedScorer(_TimedScorer(w.scorer, hist(SCORER, w.scorer)), w.weight)
              for w in profile.scorers),
        _TimedPicker(profile.picker, hist(PICKER, profile.picker)),
        profile.observers,
        profile.retainers,
    )


class _TimedFilter:
    __slots__ = ("_h", "_inner", "typed_name")

    def __init__(self, inner: Filter, h: Histogram) -> None:
        self._inner, self._h, self.typed_name = inner, h, inner.typed_name

    def filter(self, req: LLMRequest, endpoints: Sequence[Endpoint],
               cycle: CycleState) -> Sequence[Endpoint]:
        start = perf_counter()
        out = self._inner.filter(req, endpoints, cycle)
        self._h.observe(perf_counter() - start)
        return out


class _TimedScorer:
    __slots__ = ("_h", "_inner", "category", "typed_name")

    def __init__(self, inner: Scorer, h: Histogram) -> None:
        self._inner, self._h, self.typed_name = inner, h, inner.typed_name
        self.category: Category = inner.category

    def score(self, req: LLMRequest, endpoints: Sequence[Endpoint],
              cycle: CycleState) -> dict[str, float]:
        start = perf_counter()
        out = self._inner.score(req, endpoints, cycle)
        self._h.observe(perf_counter() - start)
        return out


class _TimedPicker:
    __slots__ = ("_h", "_inner", "typed_name")

    def __init__(self, inner: Picker, h: Histogram) -> None:
        self._inner, self._h, self.typed_name = inner, h, inner.typed_name

    def pick(self, scores: dict[str, float], endpoints: Sequence[Endpoint],
             cycle: CycleState) -> str:
        start = perf_counter()
        out = self._inner.pick(scores, endpoints, cycle)
        self._h.observe(perf_counter() - start)
        return out

"""Endpoint-picker latency under the Inference Extension's names (v1.5.0):
`inference_extension_scheduler_e2e_duration_seconds` (one pick, every plugin included) and
`inference_extension_plugin_duration_seconds` (per extension point, plugin type and name).

The scheduler (`poolgate.scheduling.scheduler`) times itself with `time.perf_counter` and
observes into the histograms handed out here; plugins with the same extension point and
typed name share one series, as upstream's global vector does.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.metrics_core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from poolgate.observability.histogram import Histogram

SCHEDULER_BUCKETS: tuple[float, ...] = (
    0.0001, 0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1,
)

# Extension points (the `extension_point` label values upstream uses for these plugin kinds).
FILTER = "Filter"
SCORER = "Scorer"
PICKER = "Picker"


class SchedulerTimings:
    """The scheduler's latency histograms."""

    def __init__(self) -> None:
        self.e2e = Histogram(SCHEDULER_BUCKETS)
        self._plugins: dict[tuple[str, str, str], Histogram] = {}

    def plugin(self, extension_point: str, plugin_type: str, plugin_name: str) -> Histogram:
        """The histogram of one plugin at one extension point (created on first use)."""
        key = (extension_point, plugin_type, plugin_name)
        found = self._plugins.get(key)
        if found is None:
            found = self._plugins[key] = Histogram(SCHEDULER_BUCKETS)
        return found

    def collector(self) -> Collector:
        return _SchedulerCollector(self)


class _SchedulerCollector(Collector):
    def __init__(self, timings: SchedulerTimings) -> None:
        self._timings = timings

    def describe(self) -> list[Metric]:
        return list(self._families(samples=False))

    def collect(self) -> Iterator[Metric]:
        return self._families(samples=True)

    def _families(self, samples: bool) -> Iterator[Metric]:
        e2e = HistogramMetricFamily("inference_extension_scheduler_e2e_duration_seconds",
                                    "End-to-end scheduling latency distribution in seconds.",
                                    labels=[])
        plugins = HistogramMetricFamily(
            "inference_extension_plugin_duration_seconds",
            "Plugin processing latency distribution in seconds for each extension point, plugin "
            "type and plugin name.", labels=["extension_point", "plugin_type", "plugin_name"])
        if samples:
            t = self._timings
            if t.e2e.count:
                e2e.add_metric([], t.e2e.cumulative(), t.e2e.sum)
            for labels, h in list(t._plugins.items()):
                if h.count:
                    plugins.add_metric(list(labels), h.cumulative(), h.sum)
        yield e2e
        yield plugins

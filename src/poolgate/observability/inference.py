"""Per-model request series under the names the Inference Extension's endpoint picker exports
(`inference_objective_*`, gateway-api-inference-extension v1.5.0) and llm-d's measured time to
first token, inter-token latency and time per output token (`llm_d_epp_request_*`, llm-d-router
v0.10.0). docs/metrics.md lists every family with its labels, buckets and meaning.

The request path fills one `ObjectiveSeries` per (model_name, target_model_name, priority) with
plain numbers (`proxy/recording.py` decides what to record); the collector renders them when
/metrics is read, summing over priorities for the families that have no `priority` label.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from poolgate.observability.histogram import Histogram, cumulative, merged
from poolgate.observability.meter import ITL_BUCKETS, ResponseMeter
from poolgate.observability.model_labels import ModelLabels
from poolgate.observability.usage import Usage

# Buckets, as upstream declares them (docs/metrics.md gives the source files).
GENERAL_LATENCY_BUCKETS: tuple[float, ...] = (
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2, 3, 4, 5, 6, 8, 10, 15, 20,
    30, 45, 60, 120, 180, 240, 300, 360, 480, 600, 900, 1200, 1800, 2700, 3600,
)
REQUEST_SIZE_BUCKETS: tuple[float, ...] = tuple(float(1 << n) for n in range(6, 31))  # 64 B .. 1 GiB
RESPONSE_SIZE_BUCKETS: tuple[float, ...] = (
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536,
)
INPUT_TOKEN_BUCKETS: tuple[float, ...] = (
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32778, 65536, 131072,
    262144, 524288, 1048576,
)
OUTPUT_TOKEN_BUCKETS: tuple[float, ...] = (
    1, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192,
)
NTPOT_BUCKETS: tuple[float, ...] = (
    0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0,
)
TTFT_BUCKETS: tuple[float, ...] = GENERAL_LATENCY_BUCKETS[:GENERAL_LATENCY_BUCKETS.index(120) + 1]
STREAMING_TPOT_BUCKETS: tuple[float, ...] = (
    0.0005, 0.00205, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.125, 0.15, 0.2, 0.3, 0.4, 0.5,
    0.6, 0.8, 1, 2,
)

# llm-d labels every per-request series with the flow-control fairness id; poolgate has no
# fairness queues, so every request is in llm-d's default flow.
DEFAULT_FAIRNESS_ID = "default-flow"

# Error codes (the Inference Extension's canonical codes, `error_code` label).
BAD_REQUEST = "BadRequest"
UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden"
NOT_FOUND = "NotFound"
INTERNAL = "Internal"
SERVICE_UNAVAILABLE = "ServiceUnavailable"
MODEL_SERVER_ERROR = "ModelServerError"
RESOURCE_EXHAUSTED = "ResourceExhausted"
UNKNOWN_ERROR = "Unknown"


class ObjectiveSeries:
    """The series of one (model_name, target_model_name, priority)."""

    __slots__ = ("cached_tokens", "duration", "errors", "input_tokens", "itl", "ntpot",
                 "output_tokens", "request_sizes", "requests", "response_sizes", "tpot",
                 "ttft_streamed", "ttft_unary")

    def __init__(self) -> None:
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.duration = Histogram(GENERAL_LATENCY_BUCKETS)
        self.request_sizes = Histogram(REQUEST_SIZE_BUCKETS)
        self.response_sizes = Histogram(RESPONSE_SIZE_BUCKETS)
        self.input_tokens = Histogram(INPUT_TOKEN_BUCKETS)
        self.output_tokens = Histogram(OUTPUT_TOKEN_BUCKETS)
        self.cached_tokens = Histogram(INPUT_TOKEN_BUCKETS)
        self.ntpot = Histogram(NTPOT_BUCKETS)
        self.ttft_streamed = Histogram(TTFT_BUCKETS)
        self.ttft_unary = Histogram(TTFT_BUCKETS)
        self.tpot = Histogram(STREAMING_TPOT_BUCKETS)
        self.itl = Histogram(ITL_BUCKETS)

    def count_error(self, code: str) -> None:
        errors = self.errors
        errors[code] = errors.get(code, 0) + 1

    def admitted(self, request_bytes: int) -> None:
        """A request was admitted and given an endpoint."""
        self.requests += 1
        h = self.request_sizes
        h.counts[bisect_left(h.bounds, request_bytes)] += 1
        h.sum += request_bytes

    def answered(self, elapsed: float, response_bytes: int | None, ttft: float | None,
                 meter: ResponseMeter, usage: Usage | None) -> None:
        """A model server's answer reached the client whole, `elapsed` seconds after the
        request arrived; `ttft` when it was streamed. This runs once per request: the histogram
        updates are written out (`Histogram.observe` inlined)."""
        h = self.duration
        h.counts[bisect_left(h.bounds, elapsed)] += 1
        h.sum += elapsed
        if response_bytes is not None:
            h = self.response_sizes
            h.counts[bisect_left(h.bounds, response_bytes)] += 1
            h.sum += response_bytes
        if ttft is None:
            h = self.ttft_unary  # llm-d: not streamed, its first token came with its whole body
            h.counts[bisect_left(h.bounds, elapsed)] += 1
            h.sum += elapsed
        else:
            h = self.ttft_streamed
            h.counts[bisect_left(h.bounds, ttft)] += 1
            h.sum += ttft
            self.itl.add(meter.gaps, meter.gap_sum)
        if usage is None:
            return
        prompt, out, cached = usage
        if prompt > 0:
            h = self.input_tokens
            h.counts[bisect_left(h.bounds, prompt)] += 1
            h.sum += prompt
        if cached is not None:
            self.cached_tokens.observe(cached)
        if out > 0:
            h = self.output_tokens
            h.counts[bisect_left(h.bounds, out)] += 1
            h.sum += out
            per_token = elapsed / out
            h = self.ntpot
            h.counts[bisect_left(h.bounds, per_token)] += 1
            h.sum += per_token
            if ttft is not None and out > 1:
                self.tpot.observe((elapsed - ttft) / (out - 1))


# One finished request, as `InferenceMetrics.record` takes it: model, target, priority; the
# request's body size when it was admitted (else None); its error code (else None); when the
# model server's answer reached the client whole, the request's duration, response size and,
# streamed, its TTFT (else None, None, None); the meter of its response.
Finished = tuple[str, str, int, int | None, str | None, float | None, int | None, float | None,
                 ResponseMeter]

# Finished requests are added to the series in batches: the same work run back to back over a
# batch costs about half of what it costs once per request between everything else a request
# does (measured: docs/metrics.md). A batch is processed when it is full, when the buffered
# bodies it holds (for their `usage`) pass a few MiB, and before /metrics is rendered.
BATCH = 64
MAX_HELD_BYTES = 4 << 20


class InferenceMetrics:
    """The per-model series and the running-requests gauge; `labels` bounds the model labels."""

    def __init__(self) -> None:
        self.labels = ModelLabels()
        self._series: dict[tuple[str, str, int], ObjectiveSeries] = {}
        self.running: dict[str, int] = {}
        self._pending: list[Finished] = []
        self._held = 0

    def record(self, finished: Finished) -> None:
        """Count a finished request (in the next batch)."""
        pending = self._pending
        pending.append(finished)
        self._held += finished[8].held
        if len(pending) >= BATCH or self._held > MAX_HELD_BYTES:
            self.flush()

    def flush(self) -> None:
        """Add the pending finished requests to their series."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        self._held = 0
        series_of = self.series
        for model, target, priority, request_bytes, code, elapsed, response_bytes, ttft, meter \
                in pending:
            s = series_of(model, target, priority)
            if request_bytes is not None:
                s.admitted(request_bytes)
            if code is not None:
                s.count_error(code)
            if elapsed is not None:
                s.answered(elapsed, response_bytes, ttft, meter, meter.usage())

    def series(self, model: str, target: str, priority: int) -> ObjectiveSeries:
        """The series of `model` (the label value) sent as `target` at `priority`."""
        key = (model, target, priority)
        found = self._series.get(key)
        if found is None:
            found = self._series[key] = ObjectiveSeries()
        return found

    def collector(self) -> Collector:
        return _InferenceCollector(self)


_HISTOGRAMS = (
    # (family, help, ObjectiveSeries attribute)
    ("inference_objective_request_duration_seconds",
     "Inference objective response latency distribution in seconds for each model and target "
     "model.", "duration"),
    ("inference_objective_request_sizes",
     "Inference objective requests size distribution in bytes for each model and target model.",
     "request_sizes"),
    ("inference_objective_response_sizes",
     "Inference objective responses size distribution in bytes for each model and target "
     "model.", "response_sizes"),
    ("inference_objective_input_tokens",
     "Inference objective input token count distribution for requests in each model.",
     "input_tokens"),
    ("inference_objective_output_tokens",
     "Inference objective output token count distribution for requests in each model.",
     "output_tokens"),
    ("inference_objective_prompt_cached_tokens",
     "Inference objective prompt cached token count distribution for requests in each model.",
     "cached_tokens"),
    ("inference_objective_normalized_time_per_output_token_seconds",
     "Inference objective latency divided by number of output tokens in seconds for each model "
     "and target model.", "ntpot"),
)
_MODEL = ["model_name", "target_model_name"]
_LLMD = ["model_name", "target_model_name", "fairness_id", "priority"]


class _InferenceCollector(Collector):
    def __init__(self, metrics: InferenceMetrics) -> None:
        self._metrics = metrics
        self._series = metrics._series
        self._running = metrics.running

    def describe(self) -> list[Metric]:
        return list(self._families(samples=False))

    def collect(self) -> Iterator[Metric]:
        self._metrics.flush()
        return self._families(samples=True)

    def _families(self, samples: bool) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            "inference_objective_request",
            "Counter of inference objective requests broken out for each model and target model.",
            labels=[*_MODEL, "priority"])
        errors = CounterMetricFamily(
            "inference_objective_request_error",
            "Counter of inference objective requests errors broken out for each model and target "
            "model.", labels=[*_MODEL, "error_code"])
        running = GaugeMetricFamily(
            "inference_objective_running_requests",
            "Inference objective number of running requests in each model.",
            labels=["model_name"])
        histograms = [HistogramMetricFamily(name, text, labels=_MODEL)
                      for name, text, _ in _HISTOGRAMS]
        ttft = HistogramMetricFamily(
            "llm_d_epp_request_ttft_seconds",
            "Time to first token in seconds, from the request's arrival to the first response "
            "body bytes (for a response that is not streamed, its whole body).",
            labels=[*_LLMD, "streaming"])
        tpot = HistogramMetricFamily(
            "llm_d_epp_request_streaming_tpot_seconds",
            "Average time per output token in seconds of a streamed response: "
            "(e2e - TTFT) / (output_tokens - 1).", labels=_LLMD)
        itl = HistogramMetricFamily(
            "llm_d_epp_request_streaming_itl_seconds",
            "Inter-token latency in seconds of streamed responses: the time between consecutive "
            "response body chunks.", labels=_LLMD)
        if samples:
            self._per_priority(requests, errors, ttft, tpot, itl)
            self._per_model(histograms)
            for model, n in list(self._running.items()):
                running.add_metric([model], n)
        yield requests
        yield errors
        yield running
        yield from histograms
        yield ttft
        yield tpot
        yield itl

    def _per_priority(self, requests: CounterMetricFamily, errors: CounterMetricFamily,
                      ttft: HistogramMetricFamily, tpot: HistogramMetricFamily,
                      itl: HistogramMetricFamily) -> None:
        """The families labelled by priority (and the error counts, summed over it)."""
        error_totals: dict[tuple[str, str, str], int] = {}
        for (model, target, priority), s in list(self._series.items()):
            if s.requests:
                requests.add_metric([model, target, str(priority)], s.requests)
            for code, n in s.errors.items():
                key = (model, target, code)
                error_totals[key] = error_totals.get(key, 0) + n
            llmd = [model, target, DEFAULT_FAIRNESS_ID, str(priority)]
            for h, streaming in ((s.ttft_streamed, "true"), (s.ttft_unary, "false")):
                if h.count:
                    ttft.add_metric([*llmd, streaming], h.cumulative(), h.sum)
            for family, h in ((tpot, s.tpot), (itl, s.itl)):
                if h.count:
                    family.add_metric(llmd, h.cumulative(), h.sum)
        for (model, target, code), n in error_totals.items():
            errors.add_metric([model, target, code], n)

    def _per_model(self, histograms: list[HistogramMetricFamily]) -> None:
        """The Inference Extension's histograms: per model and target, over every priority."""
        by_model: dict[tuple[str, str], list[ObjectiveSeries]] = {}
        for (model, target, _), s in list(self._series.items()):
            by_model.setdefault((model, target), []).append(s)
        for (model, target), group in by_model.items():
            for family, (_, _, attr) in zip(histograms, _HISTOGRAMS, strict=True):
                counts, total = merged(getattr(s, attr) for s in group)
                if any(counts):
                    bounds = getattr(group[0], attr).bounds
                    family.add_metric([model, target], cumulative(bounds, counts), total)

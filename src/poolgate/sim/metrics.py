"""Per-replica Prometheus metrics with vLLM 0.32's names, help texts, labels and buckets."""

from __future__ import annotations

import time
from collections.abc import Callable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector

from poolgate.sim.engine import EngineCounters, TokenOutput

CONTENT_TYPE = "text/plain; version=1.0.0; charset=utf-8"

TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
ITL_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5,
               10.0, 20.0, 40.0, 80.0)
REQUEST_LATENCY_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0,
                           50.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
FINISHED_REASONS = ("stop", "length", "abort", "error", "repetition")
_LABELS = ("engine", "model_name")


def token_buckets(max_value: int) -> list[float]:
    """vLLM's 1-2-5 token-count buckets up to `max_value`."""
    out: list[float] = []
    exponent = 0
    while True:
        for m in (1, 2, 5):
            v = m * 10**exponent
            if v > max_value:
                return out
            out.append(float(v))
        exponent += 1


class SimMetrics:
    """The `/metrics` of one replica; gauges read the engine live, counters move with events."""

    def __init__(self, model_name: str, max_model_len: int, max_loras: int,
                 cache_info: dict[str, str], wall: Callable[[], float] = time.time) -> None:
        self.registry = r = CollectorRegistry()
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        GCCollector(registry=r)
        self._wall = wall
        self._max_lora = str(max_loras)
        lv = ("0", model_name)
        self._lv = lv
        self.running = Gauge("vllm:num_requests_running",
                             "Number of requests in model execution batches.",
                             _LABELS, registry=r).labels(*lv)
        self.waiting = Gauge("vllm:num_requests_waiting",
                             "Number of requests waiting to be processed.",
                             _LABELS, registry=r).labels(*lv)
        self.kv_usage = Gauge("vllm:kv_cache_usage_perc",
                              "KV-cache usage. 1 means 100 percent usage.",
                              _LABELS, registry=r).labels(*lv)
        self.prefix_queries = Counter(
            "vllm:prefix_cache_queries",
            "Prefix cache queries, in terms of number of queried tokens.",
            _LABELS, registry=r).labels(*lv)
        self.prefix_hits = Counter(
            "vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
            _LABELS, registry=r).labels(*lv)
        self.preemptions = Counter("vllm:num_preemptions",
                                   "Cumulative number of preemption from the engine.",
                                   _LABELS, registry=r).labels(*lv)
        self.prompt_tokens = Counter("vllm:prompt_tokens", "Number of prefill tokens processed.",
                                     _LABELS, registry=r).labels(*lv)
        self.prompt_tokens_cached = Counter(
            "vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).",
            _LABELS, registry=r).labels(*lv)
        self.generation_tokens = Counter("vllm:generation_tokens",
                                         "Number of generation tokens processed.",
                                         _LABELS, registry=r).labels(*lv)
        success = Counter("vllm:request_success", "Count of successfully processed requests.",
                          ("engine", "finished_reason", "model_name"), registry=r)
        self.success = {reason: success.labels("0", reason, model_name)
                        for reason in FINISHED_REASONS}
        rejections = Counter(
            "vllm:admission_rejections",
            "Number of admission attempts rejected by a queue limit, by reason.",
            ("model_name", "reason"), registry=r)
        self.rejections = rejections.labels(model_name, "max_num_queued_reqs")
        rejections.labels(model_name, "max_num_queued_tokens")
        tb = token_buckets(max_model_len)
        self.request_prompt_tokens = Histogram(
            "vllm:request_prompt_tokens", "Number of prefill tokens processed.", _LABELS,
            registry=r, buckets=tb).labels(*lv)
        self.request_generation_tokens = Histogram(
            "vllm:request_generation_tokens", "Number of generation tokens processed.", _LABELS,
            registry=r, buckets=tb).labels(*lv)
        self.ttft = Histogram("vllm:time_to_first_token_seconds",
                              "Histogram of time to first token in seconds.", _LABELS,
                              registry=r, buckets=TTFT_BUCKETS).labels(*lv)
        self.itl = Histogram("vllm:inter_token_latency_seconds",
                             "Histogram of inter-token latency in seconds.", _LABELS,
                             registry=r, buckets=ITL_BUCKETS).labels(*lv)
        self.tpot = Histogram("vllm:request_time_per_output_token_seconds",
                              "Histogram of time_per_output_token_seconds per request.", _LABELS,
                              registry=r, buckets=ITL_BUCKETS).labels(*lv)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds",
                             "Histogram of e2e request latency in seconds.", _LABELS,
                             registry=r, buckets=REQUEST_LATENCY_BUCKETS).labels(*lv)
        self.queue_time = Histogram("vllm:request_queue_time_seconds",
                                    "Histogram of time spent in WAITING phase for request.",
                                    _LABELS, registry=r,
                                    buckets=REQUEST_LATENCY_BUCKETS).labels(*lv)
        self.lora_info = Gauge("vllm:lora_requests_info", "Running stats on lora requests.",
                               ("max_lora", "running_lora_adapters", "waiting_lora_adapters"),
                               registry=r)
        self._lora_state: tuple[str, str] | None = None
        info_labels = sorted({**cache_info, "engine": "0"}.items())
        cache_config = Gauge("vllm:cache_config_info",
                             "Information of the LLMEngine CacheConfig",
                             [k for k, _ in info_labels], registry=r)
        cache_config.labels(*[v for _, v in info_labels]).set(1)
        self._seen = EngineCounters()

    def bind(self, running: Callable[[], float], waiting: Callable[[], float],
             kv_usage: Callable[[], float]) -> None:
        """Read the live gauges from the engine at scrape time (no lag after a disconnect)."""
        self.running.set_function(running)
        self.waiting.set_function(waiting)
        self.kv_usage.set_function(kv_usage)

    def sync_counters(self, c: EngineCounters) -> None:
        """Advance the counters to the engine's cumulative totals."""
        s = self._seen
        self.prompt_tokens.inc(c.prompt_tokens - s.prompt_tokens)
        self.prefix_queries.inc(c.prefix_cache_queries - s.prefix_cache_queries)
        self.prefix_hits.inc(c.prefix_cache_hits - s.prefix_cache_hits)
        self.prompt_tokens_cached.inc(c.prefix_cache_hits - s.prefix_cache_hits)
        self.generation_tokens.inc(c.generation_tokens - s.generation_tokens)
        self.preemptions.inc(c.preemptions - s.preemptions)
        self.rejections.inc(c.rejections - s.rejections)
        self._seen = EngineCounters(c.prompt_tokens, c.generation_tokens, c.prefix_cache_queries,
                                    c.prefix_cache_hits, c.preemptions, c.rejections)

    def observe(self, out: TokenOutput) -> None:
        """Record one token's latency and, if it ended its request, the request's outcome."""
        if out.ttft is not None:
            self.ttft.observe(out.ttft)
        if out.itl is not None:
            self.itl.observe(out.itl)
        f = out.finished
        if f is None:
            return
        self.success[f.finish_reason].inc()
        self.e2e.observe(f.e2e)
        self.queue_time.observe(f.queue_time)
        self.request_prompt_tokens.observe(f.prompt_tokens)
        self.request_generation_tokens.observe(f.completion_tokens)
        if f.completion_tokens > 1:
            decode = f.e2e - f.queue_time
            self.tpot.observe(decode / (f.completion_tokens - 1))

    def set_lora_state(self, running: list[str], waiting: list[str]) -> None:
        """Stamp the current adapter combination with the time (older combinations stay)."""
        state = (",".join(running), ",".join(waiting))
        if state == self._lora_state:
            return
        self._lora_state = state
        self.lora_info.labels(self._max_lora, *state).set(self._wall())

    def render(self) -> bytes:
        """The exposition text."""
        return generate_latest(self.registry)

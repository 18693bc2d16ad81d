"""Per-pool gauges under the Inference Extension's names (`inference_pool_*`, v1.5.0).

They are computed when /metrics is read, from what the datalayer holds at that moment
(`proxy/recording.py: pool_gauges`), so the request path and the scraper pay nothing for them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector


@dataclass(frozen=True, slots=True)
class PoolGauges:
    """One pool's figures: `ready` endpoints (fresh metrics), their averages (None when no
    endpoint has fresh metrics) and each ready endpoint's waiting queue."""

    name: str
    ready: int
    average_kv_cache: float | None
    average_queue: float | None
    average_running: float | None
    queues: Sequence[tuple[str, int]]  # (endpoint, waiting requests)


PoolSource = Callable[[], Sequence[PoolGauges]]


class PoolCollector(Collector):
    """Renders the pools `source` returns (none until a source is attached)."""

    def __init__(self) -> None:
        self.source: PoolSource | None = None

    def describe(self) -> list[Metric]:
        return list(self._families(()))

    def collect(self) -> Iterator[Metric]:
        return self._families(self.source() if self.source is not None else ())

    def _families(self, pools: Sequence[PoolGauges]) -> Iterator[Metric]:
        kv = GaugeMetricFamily("inference_pool_average_kv_cache_utilization",
                               "The average kv cache utilization for an inference server pool.",
                               labels=["name"])
        queue = GaugeMetricFamily("inference_pool_average_queue_size",
                                  "The average number of requests pending in the model server "
                                  "queue.", labels=["name"])
        running = GaugeMetricFamily("inference_pool_average_running_requests",
                                    "The average number of running requests across model servers "
                                    "in the pool.", labels=["name"])
        ready = GaugeMetricFamily("inference_pool_ready_pods",
                                  "The number of ready pods in the inference server pool.",
                                  labels=["name"])
        per_pod = GaugeMetricFamily("inference_pool_per_pod_queue_size",
                                    "The total number of requests pending in the model server "
                                    "queue for each underlying pod.",
                                    labels=["name", "model_server_pod"])
        for pool in pools:
            ready.add_metric([pool.name], pool.ready)
            if pool.average_kv_cache is not None:
                kv.add_metric([pool.name], pool.average_kv_cache)
            if pool.average_queue is not None:
                queue.add_metric([pool.name], pool.average_queue)
            if pool.average_running is not None:
                running.add_metric([pool.name], pool.average_running)
            for endpoint, waiting in pool.queues:
                per_pod.add_metric([pool.name, endpoint], waiting)
        yield from (kv, queue, running, ready, per_pod)

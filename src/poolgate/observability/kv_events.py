"""The KV-event subscriber's series (`poolgate_kv_events_*`, docs/metrics.md).

Rendered when /metrics is read from plain numbers the subscriber keeps per endpoint
(`proxy/kv_metrics.py` reads them), so receiving events costs no metric update.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

STATES = ("waiting", "consistent", "degraded")


@dataclass(frozen=True, slots=True)
class KVStreamFigures:
    """One endpoint's KV-event stream: counters since it was subscribed, state, index size."""

    endpoint: str
    state: str  # one of STATES
    batches: int
    stored: int
    removed: int
    cleared: int
    gaps: int
    restarts: int
    replays_ok: int
    replays_failed: int
    blocks_dropped: int
    decode_errors: int
    disconnects: int
    blocks: int
    block_size: int | None


KVStreamSource = Callable[[], Sequence[KVStreamFigures]]


class KVEventsCollector(Collector):
    """Renders what `source` returns."""

    def __init__(self, source: KVStreamSource) -> None:
        self.source = source

    def describe(self) -> list[Metric]:
        return list(self._families(()))

    def collect(self) -> Iterator[Metric]:
        return self._families(self.source())

    @staticmethod
    def _families(streams: Sequence[KVStreamFigures]) -> Iterator[Metric]:
        ep = ["endpoint"]
        batches = CounterMetricFamily("poolgate_kv_events_batches",
                                      "KV-event batches received, by endpoint.", labels=ep)
        events = CounterMetricFamily("poolgate_kv_events_events",
                                     "KV events received, by endpoint and type.",
                                     labels=["endpoint", "type"])
        gaps = CounterMetricFamily("poolgate_kv_events_gaps",
                                   "Sequence gaps (lost batches) seen, by endpoint.", labels=ep)
        restarts = CounterMetricFamily("poolgate_kv_events_publisher_restarts",
                                       "Publishers seen starting their sequence over.", labels=ep)
        replays = CounterMetricFamily("poolgate_kv_events_replays",
                                      "Replays asked of the replay socket, by result.",
                                      labels=["endpoint", "result"])
        dropped = CounterMetricFamily("poolgate_kv_events_blocks_dropped",
                                      "Stored blocks not indexed, by reason.",
                                      labels=["endpoint", "reason"])
        errors = CounterMetricFamily("poolgate_kv_events_decode_errors",
                                     "Messages or batches that could not be read.", labels=ep)
        disconnects = CounterMetricFamily("poolgate_kv_events_disconnects",
                                          "Connections to the publisher lost (its entries are "
                                          "cleared; the next batch starts over).", labels=ep)
        state = GaugeMetricFamily("poolgate_kv_events_endpoints",
                                  "Subscribed endpoints by state (waiting: no events yet; "
                                  "consistent: used; degraded: events lost, approximate "
                                  "routing until the hold ends).", labels=["state"])
        blocks = GaugeMetricFamily("poolgate_kv_events_blocks",
                                   "Blocks indexed from the events, by endpoint.", labels=ep)
        size = GaugeMetricFamily("poolgate_kv_events_block_size",
                                 "Tokens per block, as the endpoint's events announce.",
                                 labels=ep)
        counts = dict.fromkeys(STATES, 0)
        for s in streams:
            e = [s.endpoint]
            batches.add_metric(e, s.batches)
            events.add_metric([s.endpoint, "BlockStored"], s.stored)
            events.add_metric([s.endpoint, "BlockRemoved"], s.removed)
            events.add_metric([s.endpoint, "AllBlocksCleared"], s.cleared)
            gaps.add_metric(e, s.gaps)
            restarts.add_metric(e, s.restarts)
            replays.add_metric([s.endpoint, "ok"], s.replays_ok)
            replays.add_metric([s.endpoint, "failed"], s.replays_failed)
            dropped.add_metric([s.endpoint, "unknown_parent"], s.blocks_dropped)
            errors.add_metric(e, s.decode_errors)
            disconnects.add_metric(e, s.disconnects)
            counts[s.state] = counts.get(s.state, 0) + 1
            blocks.add_metric(e, s.blocks)
            if s.block_size is not None:
                size.add_metric(e, s.block_size)
        for name, n in counts.items():
            state.add_metric([name], n)
        yield from (batches, events, gaps, restarts, replays, dropped, errors, disconnects, state,
                    blocks, size)

"""The outcome of benchmarking one target: config, records and measured side data."""

from __future__ import annotations

from dataclasses import dataclass, field

from poolgate.bench.config import BenchConfig, Target
from poolgate.bench.cpu import CpuUsage
from poolgate.bench.records import RequestRecord
from poolgate.bench.scrape import QueueStats
from poolgate.bench.summary import Summary


@dataclass(slots=True)
class BenchResult:
    """One target's run; `summary()` gives the headline numbers, `records` the raw data."""

    target: Target
    config: BenchConfig
    records: list[RequestRecord]
    duration: float  # seconds from the first send to the last response of the measured phase
    started_at: str  # ISO 8601 UTC wall time of the measured phase's start
    warmup_requests: int = 0
    cpu: CpuUsage | None = None
    queue: QueueStats | None = None
    _summary: Summary | None = field(default=None, repr=False)

    def summary(self) -> Summary:
        if self._summary is None:
            self._summary = Summary.of(self.records, self.duration, cpu=self.cpu, queue=self.queue)
        return self._summary

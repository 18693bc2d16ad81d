"""The headline numbers of one run, computed from its request records."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from poolgate.bench.cpu import CpuUsage
from poolgate.bench.records import RequestRecord
from poolgate.bench.scrape import QueueStats
from poolgate.bench.stats import Distribution


@dataclass(frozen=True, slots=True)
class Summary:
    """Latency distributions (seconds), throughput, errors and cache/queue/CPU figures of a run."""

    requests: int
    completed: int
    failed: int
    errors: dict[str, int]
    duration: float
    request_throughput: float
    output_throughput: float
    input_throughput: float
    total_prompt_tokens: int
    total_output_tokens: int
    total_cached_tokens: int
    prefix_cache_hit_rate: float | None
    ttft: Distribution
    tpot: Distribution
    itl: Distribution
    e2e: Distribution
    lateness: Distribution
    cpu: CpuUsage | None
    queue: QueueStats | None

    @classmethod
    def of(
        cls,
        records: Sequence[RequestRecord],
        duration: float,
        *,
        cpu: CpuUsage | None = None,
        queue: QueueStats | None = None,
    ) -> Summary:
        ok = [r for r in records if r.ok]
        errors = Counter(r.error for r in records if r.error is not None)
        out_tokens = sum(r.output_tokens or 0 for r in ok)
        prompt_tokens = sum(r.prompt_tokens or 0 for r in ok)
        # A server may omit prompt_tokens_details when nothing was cached (the simulator does),
        # so a missing value counts as 0; the rate is unknown only if no response reported it.
        reported = any(r.cached_tokens is not None for r in ok)
        cached = sum(r.cached_tokens or 0 for r in ok)
        rate = (lambda n: n / duration) if duration > 0 else (lambda n: 0.0)
        return cls(
            requests=len(records),
            completed=len(ok),
            failed=len(records) - len(ok),
            errors=dict(sorted(errors.items())),
            duration=duration,
            request_throughput=rate(len(ok)),
            output_throughput=rate(out_tokens),
            input_throughput=rate(prompt_tokens),
            total_prompt_tokens=prompt_tokens,
            total_output_tokens=out_tokens,
            total_cached_tokens=cached,
            prefix_cache_hit_rate=cached / prompt_tokens if reported and prompt_tokens else None,
            ttft=Distribution.of([r.ttft for r in ok if r.ttft is not None]),
            tpot=Distribution.of([t for r in ok if (t := r.tpot) is not None]),
            itl=Distribution.of([g for r in ok for g in r.itl]),
            e2e=Distribution.of([r.e2e for r in ok if r.e2e is not None]),
            lateness=Distribution.of([r.lateness for r in records]),
            cpu=cpu,
            queue=queue,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (schema: docs/bench.md, `runs[].summary`)."""
        return {
            "requests": self.requests,
            "completed": self.completed,
            "failed": self.failed,
            "errors": self.errors,
            "duration": self.duration,
            "request_throughput": self.request_throughput,
            "output_throughput": self.output_throughput,
            "input_throughput": self.input_throughput,
            "total_prompt_tokens": self.total_prompt_tokens,
            "total_output_tokens": self.total_output_tokens,
            "total_cached_tokens": self.total_cached_tokens,
            "prefix_cache_hit_rate": self.prefix_cache_hit_rate,
            "ttft": self.ttft.to_dict(),
            "tpot": self.tpot.to_dict(),
            "itl": self.itl.to_dict(),
            "e2e": self.e2e.to_dict(),
            "scheduler_lateness": self.lateness.to_dict(),
            "cpu": self.cpu.to_dict() if self.cpu else None,
            "queue": self.queue.to_dict() if self.queue else None,
        }

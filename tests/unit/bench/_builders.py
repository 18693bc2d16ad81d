"""Builders for records and results used by the report tests."""

from __future__ import annotations

from typing import Any

from poolgate.bench.config import BenchConfig, LoadConfig, Target, WorkloadConfig
from poolgate.bench.records import RequestRecord
from poolgate.bench.result import BenchResult


def rec(index: int = 0, **kw: Any) -> RequestRecord:
    """A successful request unless `error=` is given."""
    defaults: dict[str, Any] = {
        "model": "m", "prompt_len": 100, "max_tokens": 10, "scheduled": index * 0.1,
        "sent": index * 0.1, "finished": index * 0.1 + 1.0, "status": 200, "ttft": 0.1,
        "e2e": 1.0, "itl": [0.1] * 9, "output_tokens": 10, "prompt_tokens": 100,
        "cached_tokens": 50,
    }
    defaults.update(kw)
    return RequestRecord(index=index, **defaults)


def result(name: str = "a", records: list[RequestRecord] | None = None, duration: float = 2.0,
           **kw: Any) -> BenchResult:
    cfg = BenchConfig(workload=WorkloadConfig(model="m"), load=LoadConfig(rate=1, requests=2),
                      headers=(("Authorization", "Bearer secret"), ("x-gateway-inference-objective", "hi")))
    return BenchResult(
        target=Target(name, "http://127.0.0.1:9"), config=cfg,
        records=records if records is not None else [rec(0), rec(1)],
        duration=duration, started_at="2026-01-01T00:00:00+00:00", **kw,
    )

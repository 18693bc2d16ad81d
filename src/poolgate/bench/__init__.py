"""Load generation and reports for OpenAI-compatible endpoints (`poolgate bench`).

Library use (the CLI is a thin layer over this)::

    config = BenchConfig(workload=WorkloadConfig(model="m"), load=LoadConfig(rate=5, requests=100))
    results = await run_comparison(config, [Target("gw", "http://127.0.0.1:8080")])
    print(results[0].summary().ttft.p99)
    write_json(results, "out.json", raw=True)
"""

from poolgate.bench.config import (
    BenchConfig,
    LoadConfig,
    ModelWeight,
    Target,
    WorkloadConfig,
    parse_model_mix,
    parse_target,
)
from poolgate.bench.cpu import CpuUsage
from poolgate.bench.errors import BenchError
from poolgate.bench.lengths import LengthSpec
from poolgate.bench.plot import plot
from poolgate.bench.records import RequestRecord
from poolgate.bench.report_json import (
    SCHEMA,
    SCHEMA_VERSION,
    read_json,
    report_document,
    write_json,
)
from poolgate.bench.result import BenchResult
from poolgate.bench.runner import run_benchmark, run_comparison
from poolgate.bench.scrape import QueueStats, ScrapeRound
from poolgate.bench.stats import Distribution, percentile
from poolgate.bench.summary import Summary
from poolgate.bench.workload import BenchRequest, Workload

__all__ = [
    "SCHEMA",
    "SCHEMA_VERSION",
    "BenchConfig",
    "BenchError",
    "BenchRequest",
    "BenchResult",
    "CpuUsage",
    "Distribution",
    "LengthSpec",
    "LoadConfig",
    "ModelWeight",
    "QueueStats",
    "RequestRecord",
    "ScrapeRound",
    "Summary",
    "Target",
    "Workload",
    "WorkloadConfig",
    "parse_model_mix",
    "parse_target",
    "percentile",
    "plot",
    "read_json",
    "report_document",
    "run_benchmark",
    "run_comparison",
    "write_json",
]

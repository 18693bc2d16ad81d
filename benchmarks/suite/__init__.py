"""The benchmark suite behind `make bench` and `make bench-peers` (`python -m benchmarks.suite`).

It starts the simulator, the gateway and peer routers as real processes on 127.0.0.1, drives them
with `poolgate.bench`, saves one JSON per section under `docs/benchmarks/` and renders
`docs/benchmarks.md` from those files (see `report.render`).
"""

from benchmarks.suite.main import SuiteOptions, main, parse_args, run_suite, write_report

__all__ = ["SuiteOptions", "main", "parse_args", "run_suite", "write_report"]

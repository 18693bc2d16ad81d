"""Repository tooling that measures poolgate; not part of the `poolgate` package or its wheel.

Run from the repository root: `python -m benchmarks.suite` (what `make bench` runs) and
`python -m benchmarks.pick [PROFILE]`.
"""

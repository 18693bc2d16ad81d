"""A PNG comparing runs (`--plot PATH.png`): latency CDFs and throughput; needs `poolgate[bench]`."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from poolgate.bench.errors import BenchError
from poolgate.bench.result import BenchResult


def _pyplot() -> Any:
    try:
        matplotlib = importlib.import_module("matplotlib")
    except ImportError:
        raise BenchError(
            "--plot needs matplotlib, an optional extra: pip install 'poolgate[bench]'"
        ) from None
    # A file backend: plotting must work without a display (CI, ssh).
    matplotlib.use("Agg")
    return importlib.import_module("matplotlib.pyplot")


def _cdf(ax: Any, values: Sequence[float], label: str) -> None:
    xs = sorted(v * 1000 for v in values)
    if not xs:
        return
    ys = [(i + 1) / len(xs) for i in range(len(xs))]
    ax.step(xs, ys, where="post", label=label)


def plot(results: Sequence[BenchResult], path: str | Path) -> None:
    """Write a 2x2 figure: CDFs of TTFT, TPOT and E2E per run, and output tokens/s per run."""
    if not results:
        raise BenchError("no results to plot")
    plt = _pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    panels: tuple[tuple[Any, str, Callable[[BenchResult], list[float]]], ...] = (
        (axes[0][0], "TTFT (ms)", lambda r: [x.ttft for x in r.records if x.ok and x.ttft is not None]),
        (axes[0][1], "TPOT (ms)", lambda r: [t for x in r.records if x.ok and (t := x.tpot) is not None]),
        (axes[1][0], "E2E latency (ms)", lambda r: [x.e2e for x in r.records if x.ok and x.e2e is not None]),
    )
    for ax, title, values in panels:
        for r in results:
            _cdf(ax, values(r), r.target.name)
        ax.set_title(title)
        ax.set_xlabel("ms")
        ax.set_ylabel("fraction of requests")
        ax.grid(True, alpha=0.3)
        ax.legend()
    ax = axes[1][1]
    names = [r.target.name for r in results]
    ax.bar(names, [r.summary().output_throughput for r in results])
    ax.set_title("output tokens/s")
    ax.grid(True, axis="y", alpha=0.3)
    fig.suptitle(f"poolgate bench: {results[0].config.workload.kind}")
    fig.tight_layout()
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(target, dpi=100)
    except OSError as e:
        raise BenchError(f"cannot write the plot to {target}: {e.strerror or e}") from None
    finally:
        plt.close(fig)

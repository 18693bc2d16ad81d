"""Markdown tables of a section's rows (pure: rows in, text out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from benchmarks.suite import _format as fmt
from benchmarks.suite.checks import added, baseline_row
from benchmarks.suite.model import Check, RunRow


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured table; `|` inside cells is escaped."""
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
    out = [line(header), "| " + " | ".join("---" for _ in header) + " |"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def errors_text(row: RunRow) -> str:
    """`0`, or the failed count with its classes."""
    if not row.errors:
        return "0"
    return f"{row.requests - row.completed} (" + ", ".join(
        f"{k}: {v}" for k, v in sorted(row.errors.items())) + ")"


def overhead_table(rows: Sequence[RunRow], sim_cpu: dict[str, float]) -> str:
    """Requests/s, e2e p50/p99, added latency against the direct row of the same concurrency,
    and CPU per request of the front and of the simulator."""
    by_name = {r.name: r for r in rows}
    body = []
    for r in rows:
        base = by_name.get(baseline_row(r.name))
        is_base = base is None or base.name == r.name
        body.append([
            r.name, f"{r.completed}", fmt.rate(r.request_throughput, "req/s"),
            fmt.ms(r.e2e_p50, 2), fmt.ms(r.e2e_p99, 2),
            fmt.MISSING if is_base or base is None else fmt.ms(added(r.e2e_p50, base.e2e_p50), 2),
            fmt.MISSING if is_base or base is None else fmt.ms(added(r.e2e_p99, base.e2e_p99), 2),
            fmt.us(r.cpu_us_per_request), fmt.us(sim_cpu.get(r.name)), errors_text(r),
        ])
    return markdown_table(
        ["run", "requests", "throughput", "e2e p50", "e2e p99", "added p50", "added p99",
         "front CPU / req", "sim CPU / req", "errors"], body)


def routing_table(rows: Sequence[RunRow], baseline: str | None,
                  sim_share: Mapping[str, float] | None = None) -> str:
    """TTFT percentiles, throughput, prefix-cache hits and queue balance per run; ratios
    against `baseline` (round-robin) when it ran; the simulator's CPU as a share of one core."""
    share = sim_share or {}
    base = next((r for r in rows if r.name == baseline), None)
    body = []
    for r in rows:
        vs = (fmt.ratio(r.output_throughput / base.output_throughput)
              if base is not None and base.output_throughput > 0 else fmt.MISSING)
        body.append([
            r.name, fmt.ms(r.ttft_p50, 0), fmt.ms(r.ttft_p90, 0), fmt.ms(r.ttft_p99, 0),
            fmt.rate(r.output_throughput, "tok/s"), vs, fmt.rate(r.request_throughput, "req/s"),
            fmt.pct(r.prefix_cache_hit_rate),
            "-" if r.queue_mean is None else f"{r.queue_mean:.1f} / {r.queue_max:.0f}",
            f"{r.queue_rounds_above_2x_floor} / {r.queue_rounds_above_2x} of {r.queue_rounds}",
            fmt.us(r.cpu_us_per_request), fmt.pct(share.get(r.name)),
            fmt.ms(r.lateness_p99, 1), errors_text(r),
        ])
    return markdown_table(
        ["run", "TTFT p50", "TTFT p90", "TTFT p99", "output tokens/s",
         f"vs {baseline}" if baseline else "vs baseline", "requests/s", "prefix-cache hits",
         "waiting mean / max", "scrapes > 2x mean (excusing <= 2 / all)", "front CPU / req",
         "sim CPU (of 1 core)", "client lateness p99", "errors"], body)


def checks_table(checks: Sequence[Check]) -> str:
    return markdown_table(["target", "wanted", "measured", "verdict"],
                          [[c.what, c.target, c.measured, f"**{c.verdict}**"] for c in checks])


def pick_table(costs: dict[str, dict[str, float]], sizes: Sequence[int]) -> str:
    body = [[profile, *(fmt.us(by_size.get(str(n))) for n in sizes)]
            for profile, by_size in costs.items()]
    return markdown_table(["profile", *(f"{n} endpoints" for n in sizes)], body)

"""The report's capacity section (pure: the saved section in, Markdown and checks out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from benchmarks.suite import _format as fmt
from benchmarks.suite.capacity import ONE_REPLICA, PARTITIONED, POOLGATE_DEFAULT, SATURATED
from benchmarks.suite.model import Check, RunRow, Section
from benchmarks.suite.tables import markdown_table

TITLE = "## 7. Capacity: the highest rate under a TTFT target (issue 17)\n\n"
HOW = "python -m benchmarks.suite --only capacity --peers-venv .venv-peers --out docs/benchmarks.md"


def _fronts(section: Section) -> Mapping[str, Mapping[str, Any]]:
    return dict(section.extra.get("fronts", {}))


def _ceiling(section: Section) -> Mapping[str, Any]:
    return dict(section.extra.get("ceiling", {}))


def max_rate(section: Section, front: str) -> float | None:
    """The highest rate at which `front` met the target, if any trial passed."""
    value = _fronts(section).get(front, {}).get("max_rate")
    return None if value is None else float(value)


def fleet_ceiling(section: Section) -> float | None:
    """The fleet's throughput bound (measured, else the analytic one)."""
    c = _ceiling(section)
    value = c.get("fleet_saturated") or c.get("fleet_analytic")
    return None if value is None else float(value)


def _rate_text(front: Mapping[str, Any]) -> str:
    rate = front.get("max_rate")
    trials = front.get("trials", [])
    if rate is None:
        lowest = min((float(t["rate"]) for t in trials), default=None)
        return fmt.MISSING if lowest is None else f"< {fmt.rate(lowest, 'req/s')}"
    text = fmt.rate(float(rate), "req/s")
    text = f">= {text} (the cap)" if front.get("reached_cap") else text
    rounds = front.get("max_rates") or []
    if len(rounds) > 1:
        text += " (median of " + ", ".join(fmt.MISSING if r is None else f"{float(r):g}"
                                            for r in rounds) + ")"
    return text


def _rounds(front: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every round's search of a front (the front itself when it ran once)."""
    return list(front.get("rounds") or [front])


def _first_failure(front: Mapping[str, Any]) -> str:
    failed = [t for t in front.get("trials", []) if not t.get("passed")]
    if not failed:
        return fmt.MISSING
    low = min(failed, key=lambda t: float(t["rate"]))
    return f"{float(low['rate']):g} req/s: {low.get('reason', '')}"


def _share(rate: float | None, ceiling: float | None) -> str:
    return fmt.MISSING if rate is None or not ceiling else fmt.pct(rate / ceiling)


def capacity_table(section: Section) -> str:
    """One row per front at its highest passing rate, then the ceiling's two rows."""
    fronts = _fronts(section)
    ceiling = fleet_ceiling(section)
    rows_by_name = {r.name: r for r in section.rows}
    body = []
    for name, front in fronts.items():
        row = rows_by_name.get(name)
        trials = sum(len(r.get("trials", [])) for r in _rounds(front))
        body.append([name, _rate_text(front), _first_failure(front), *_figures(row),
                     _share(front.get("max_rate"), ceiling), str(trials)])
    c = _ceiling(section)
    n = c.get("replicas", section.settings.get("replicas"))
    saturated = rows_by_name.get(SATURATED)
    body.append([f"fleet ceiling: {n} x one replica saturated ({c.get('concurrency')} in flight, "
                 "every prompt cached)",
                 fmt.rate(c.get("fleet_saturated"), "req/s"),
                 f"analytic: {fmt.rate(c.get('fleet_analytic'), 'req/s')}",
                 fmt.MISSING, fmt.MISSING, fmt.MISSING,
                 fmt.MISSING if saturated is None else
                 fmt.rate(saturated.output_throughput * int(n or 1), "tok/s"),
                 fmt.rate(c.get("fleet_saturated"), "req/s"),
                 fmt.MISSING if saturated is None else fmt.pct(saturated.prefix_cache_hit_rate),
                 "100.0%" if c.get("fleet_saturated") else fmt.MISSING, "1"])
    search = c.get("one_replica_search") or {}
    one = rows_by_name.get(ONE_REPLICA)
    body.append([f"{PARTITIONED}: {n} x one replica's highest rate under the target",
                 fmt.rate(c.get("fleet_partitioned"), "req/s"),
                 f"one replica at {_first_failure(search)}" if search.get("trials") else fmt.MISSING,
                 *_figures(one, int(n or 1)),
                 _share(c.get("fleet_partitioned"), ceiling), str(len(search.get("trials", [])))])
    return markdown_table(
        ["front", "highest rate, TTFT p90 < 500 ms", "lowest failing rate: why", "TTFT p50",
         "TTFT p90", "TTFT p99", "output tokens/s", "requests/s", "prefix-cache hits",
         "of the ceiling", "trials"], body)


def _figures(row: RunRow | None, times: int = 1) -> list[str]:
    """TTFT p50/p90/p99, tokens/s and requests/s (x `times` for one replica of n), hit rate."""
    if row is None:
        return [fmt.MISSING] * 6
    return [fmt.ms(row.ttft_p50, 0), fmt.ms(row.ttft_p90, 0), fmt.ms(row.ttft_p99, 0),
            fmt.rate(row.output_throughput * times, "tok/s"),
            fmt.rate(row.request_throughput * times, "req/s"), fmt.pct(row.prefix_cache_hit_rate)]


def trials_table(section: Section) -> str:
    """Every trial of every search in order: rate, TTFT p90, pass or why not."""
    searches = dict(_fronts(section))
    one = _ceiling(section).get("one_replica_search")
    if one:
        searches["one replica (x8 in the table above)"] = one
    body = []
    for name, front in searches.items():
        rounds = _rounds(front)
        for n, search in enumerate(rounds, 1):
            steps = [f"{float(t['rate']):g}: {fmt.ms(t.get('ttft_p90'), 0)} "
                     f"{'pass' if t.get('passed') else 'fail'}" for t in search.get("trials", [])]
            body.append([name if len(rounds) == 1 else f"{name}, round {n}",
                         ", ".join(steps) or fmt.MISSING,
                         fmt.MISSING if search.get("broken") is None else str(search["broken"])])
    return markdown_table(["search", "trials in order (req/s: TTFT p90, verdict)",
                           "stopped early"], body)


def capacity_checks(section: Section | None) -> list[Check]:
    """Issue 17, item 3: poolgate's default at least the best peer configuration's rate."""
    if section is None:
        return []
    ours = max_rate(section, POOLGATE_DEFAULT)
    peers = {name: max_rate(section, name) for name, f in _fronts(section).items()
             if f.get("kind") == "peer"}
    measured_peers = {n: r for n, r in peers.items() if r is not None}
    what = "highest Poisson rate with TTFT p90 < 500 ms, default vs the best peer configuration"
    if ours is None or not peers:
        return [Check(what, ">= the best peer's", fmt.rate(ours, "req/s"), None)]
    best_name, best = max(measured_peers.items(), key=lambda kv: kv[1], default=(None, 0.0))
    ceiling = fleet_ceiling(section)
    measured = fmt.rate(ours, "req/s")
    if best:
        measured += f" ({fmt.ratio(ours / best)})"
    if ceiling:
        measured += f"; fleet ceiling {fmt.rate(ceiling, 'req/s')} ({fmt.pct(ours / ceiling)})"
    target = (f">= {best_name}'s {fmt.rate(best, 'req/s')}" if best_name
              else ">= the best peer's (no peer met the target at any rate tried)")
    return [Check(what, target, measured, ours >= best)]


def _tokens(value: object) -> str:
    return fmt.MISSING if value is None else f"{float(str(value)):.0f} per request"


def _intro(st: Mapping[str, Any], uncached: object = None) -> str:
    scale = float(st.get("time_scale") or 1)
    target_ms = float(st.get("ttft_p90_target", 0.5)) * 1000
    return (
        f"How much load each front takes before its TTFT p90 reaches {target_ms:.0f} ms, on "
        f"section 6b's fleet and workload: {st.get('replicas')} simulated replicas "
        f"(`{st.get('sim_profile')}`, `--time-scale {st.get('time_scale')}`, "
        f"{st.get('kv_cache_blocks')} KV blocks, `--max-num-seqs {st.get('max_num_seqs')}`), "
        f"{st.get('groups')} system prompts of {st.get('system_prompt_len')} tokens with "
        f"Zipf-skewed popularity (`--group-zipf {st.get('group_zipf')}`, the hottest about a "
        f"quarter of the requests), {st.get('question_len')}-token questions, "
        f"{st.get('output_len')} output tokens, streamed chat, Poisson arrivals. Rates and "
        f"latencies are wall-clock, as the client saw them (the simulated H100s run "
        f"{1 / scale:g}x slower than real ones: {target_ms:.0f} ms here is "
        f"{target_ms * scale:.0f} ms of simulated time, and a rate here is {1 / scale:g}x as "
        f"many requests/s of real H100s). The fronts: poolgate's `default` profile; "
        f"`poolgate precise`, the same plugins with the precise prefix scorer fed by the "
        f"replicas' KV events (the precise section's `benchmarks/suite/precise-profile.yaml`) "
        f"on the same fleet publishing them (`--kv-events-config`); each peer's `cache_aware`; "
        f"vllm-router's `round_robin` as the baseline.\n\n"
        f"A trial passes when every request is answered, the TTFT p90 is under "
        f"{target_ms:.0f} ms and the front keeps up: it completes requests at "
        f"{float(st.get('min_keep_up', 0.9)) * 100:.0f} % of the rate they arrived at or more, "
        f"each rate taken from the first to the last event (a front that serves the offered load "
        f"completes requests as they arrived, shifted by their service time; one that falls "
        f"behind stretches its completions over a longer span; the e2e of the first and last "
        f"requests alone differ by a few % of a trial, hence the margin). Each trial is {st.get('trial')} s of arrivals on a fresh "
        f"fleet with the same seed, so no cache or queue carries over, after a warm-up of one "
        f"request of every group, sent through the front at once and waited for: every prefix "
        f"is then cached where the front put it. (A cold {st.get('system_prompt_len')}-token "
        f"prefill takes about 0.5 s of wall-clock time here, as much as the target; drawn by "
        f"popularity, a short warm-up leaves the coldest groups uncached, and in a short trial "
        f"at a low rate their first requests alone put the p90 over it.) The same seed gives "
        f"every trial the same arrival pattern, scaled to its rate. The search starts at {st.get('start')} requests/s and doubles until a trial "
        f"fails, never above the cap ({st.get('cap')} requests/s: the fleet ceiling below, "
        f"rounded up), then bisects between the highest pass and the lowest failure to "
        f"{st.get('resolution')} request/s. Every front is searched {st.get('rounds', 1)} "
        f"time(s), independently; each step runs one trial of every search still going, in an "
        f"order rotated by one per step, so a slow spell of the shared machine touches every "
        f"front alike. A front's highest rate is the median of its searches' (the rounds' "
        f"figures in brackets), and its row shows that search's trial at that rate and, as the "
        f"lowest failing rate, why the next step up failed. Short trials are noisy (near its "
        f"limit a front passes or fails a rate by chance), and a backlog that grows slowly can "
        f"take longer than {st.get('trial')} s to show; every trial is listed below.\n\n"
        f"**The ceiling** is measured on one replica of the same fleet, with the client calling "
        f"it directly and sending only its share of the groups under a perfect partition "
        f"({st.get('groups')} over {st.get('replicas')} replicas: two, uniformly), so every "
        f"request after the first of its group hits the cache. Kept saturated (twice its batch "
        f"slots outstanding for {st.get('saturated_seconds')} s; throughput = tokens streamed "
        f"per second after the first quarter / tokens per request, since completions come in "
        f"bursts of a whole batch), it gives what the fleet can serve at most whatever "
        f"the router: no router makes a replica decode faster than with every slot busy on "
        f"cached prompts, and the skew cannot raise it (the hot group's extra replica costs one "
        f"prefill of its prefix). The analytic figure cross-checks the measurement with the "
        f"simulator's step-time model: slots x time scale / (output tokens x step time at a "
        f"full batch + slots x uncached prompt tokens per request x prefill time per token), "
        f"the uncached tokens (the question and the prefix's partial last block: "
        f"{_tokens(uncached)}) taken from the saturated run's usage. Under a TTFT target no router "
        f"reaches the bound exactly: requests must queue somewhere to keep every slot busy. "
        f"The second ceiling row is the same rate search on that one replica (trials of "
        f"{st.get('replica_trial')} s, to {st.get('replica_resolution')} request/s) times the "
        f"replica count: eight replicas that each serve their own groups, all cached, with "
        f"Poisson arrivals and no balancing between them. A router that balances load between "
        f"replicas can exceed it (pooled queues wait less than separate ones) but not the "
        f"throughput bound; a router that keeps each group on one replica cannot even reach "
        f"it on this workload, since the hottest group alone is about twice a replica's share."
        f"\n\n")


def markdown(section: Section | None) -> str:
    if section is None:
        return TITLE + f"Not measured yet: run `{HOW}` (or `make bench-capacity`).\n"
    return (TITLE + _intro(section.settings, _ceiling(section).get("uncached_tokens_per_request")) + _header(section) + "\n" + capacity_table(section)
            + "\n\n" + _checks(section) + "Every trial:\n\n" + trials_table(section) + "\n\n"
            + f"Run with `{HOW}` (`make bench-capacity`). Commands (`$SIM_PORT`, `$PORT`, ... "
            "are free ports picked per trial; replica i listens on `$SIM_PORT + i`; RATE is the "
            "trial's rate):\n\n```bash\n" + "\n".join(section.commands) + "\n```\n\n"
            + "".join(f"- {n}\n" for n in section.notes))


def _checks(section: Section) -> str:
    checks = capacity_checks(section)
    if not checks:
        return ""
    return markdown_table(["target", "wanted", "measured", "verdict"],
                          [[c.what, c.target, c.measured, f"**{c.verdict}**"]
                           for c in checks]) + "\n\n"


def _header(section: Section) -> str:
    foreign = section.extra.get("foreign_cpu_share")
    load = ("" if foreign is None else
            f"; other work on the machine used {fmt.pct(foreign)} of its CPU meanwhile")
    return f"_Measured {section.created_at} in {section.duration_s:.0f} s{load}._\n"


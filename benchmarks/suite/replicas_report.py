"""The report's section on several gateway replicas (pure: the saved section in, Markdown out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.suite import _format as fmt
from benchmarks.suite.epp_stack import ENVOY
from benchmarks.suite.model import Check, RunRow, Section
from benchmarks.suite.tables import checks_table, markdown_table, routing_table

TITLE = "## 8. Several gateway replicas behind a round-robin front (issue 17)\n\n"
HOW = "python -m benchmarks.suite --only replicas"
DEFAULT_TOLERANCE = 0.10


def _pairs(section: Section) -> list[tuple[str, RunRow, list[RunRow]]]:
    """Per profile: its one-gateway row and the rows of several gateways."""
    out = []
    for one in section.rows:
        profile, _, what = one.name.partition(": ")
        if what != "1 gateway":
            continue
        many = [r for r in section.rows
                if r.name.startswith(f"{profile}: ") and r.name != one.name]
        out.append((profile, one, many))
    return out


def replica_checks(section: Section | None) -> list[Check]:
    """Issue 17: n gateways keep one gateway's TTFT p90 and output throughput within the
    tolerance (10 %), for every configuration of several gateways that ran."""
    if section is None:
        return []
    tol = float(section.extra.get("tolerance", DEFAULT_TOLERANCE))
    checks = []
    for _, one, many in _pairs(section):
        for r in many:
            ttft = (r.ttft_p90 / one.ttft_p90
                    if r.ttft_p90 is not None and one.ttft_p90 else None)
            tput = (r.output_throughput / one.output_throughput
                    if one.output_throughput else None)
            checks.append(Check(
                f"{r.name} vs {one.name}: TTFT p90", f"<= {1 + tol:.2f}x",
                f"{fmt.ms(r.ttft_p90, 0)} vs {fmt.ms(one.ttft_p90, 0)} ({fmt.ratio(ttft)})",
                None if ttft is None else ttft <= 1 + tol))
            checks.append(Check(
                f"{r.name} vs {one.name}: output tokens/s", f">= {1 - tol:.2f}x",
                f"{r.output_throughput:.0f} vs {one.output_throughput:.0f} ({fmt.ratio(tput)})",
                None if tput is None else tput >= 1 - tol))
    return checks


def _summary(section: Section) -> str:
    """Per profile, one sentence: the several gateways' TTFT p90 against one's, without and
    with the shared view."""
    lines = []
    for profile, one, many in _pairs(section):
        if not one.ttft_p90:
            continue
        parts = [f"{r.name.partition(': ')[2]} {fmt.ms(r.ttft_p90, 0)} "
                 f"({fmt.ratio(r.ttft_p90 / one.ttft_p90)})"
                 for r in many if r.ttft_p90 is not None]
        lines.append(f"- `{profile}`: TTFT p90 with one gateway {fmt.ms(one.ttft_p90, 0)}; "
                     + "; ".join(parts) + "\n")
    return "".join(lines) + ("\n" if lines else "")


def _cpu_table(section: Section) -> str:
    """Front CPU per request by process: Envoy, the gateways together, redis-server."""
    runs: Mapping[str, Mapping[str, Any]] = section.extra.get("runs", {})
    body = []
    for r in section.rows:
        cpu: Mapping[str, float] = runs.get(r.name, {}).get("cpu_us", {})
        gateways = [v for k, v in cpu.items() if k.startswith("gateway")]
        body.append([r.name, fmt.us(cpu.get(ENVOY)), fmt.us(sum(gateways) if gateways else None),
                     fmt.us(cpu.get("redis")), fmt.us(r.cpu_us_per_request)])
    return markdown_table(["run", "Envoy", "gateways (all)", "redis-server", "total"], body)


def _per_round(section: Section) -> str:
    per: Mapping[str, Sequence[Mapping[str, float | None]]] = section.extra.get("per_round", {})
    if len(next(iter(per.values()), [])) < 2:
        return ""
    parts = []
    for name, rounds in per.items():
        ttft = " / ".join(fmt.ms(x.get("ttft_p90"), 0) for x in rounds)
        parts.append(f"{name} {ttft}")
    return f"TTFT p90 by round (rows are medians): {'; '.join(parts)}.\n\n"


def _views(section: Section) -> str:
    """What each shared run's gateways reported about the view at the end of the run."""
    views: Mapping[str, Sequence[Sequence[Mapping[str, float]]]] = section.extra.get(
        "shared_view", {})
    lines = []
    for name, rounds in views.items():
        ups = [g.get("poolgate_shared_load_up", 0.0) for r in rounds for g in r]
        peers = [g.get("poolgate_shared_load_peers", 0.0) for r in rounds for g in r]
        errors = sum(v for r in rounds for g in r for k, v in g.items()
                     if k.startswith("poolgate_shared_load_errors_total"))
        lines.append(f"- {name}: at the end of each run {sum(1 for u in ups if u == 1)} of "
                     f"{len(ups)} gateways had the view up, seeing "
                     f"{min(peers, default=0):.0f} to {max(peers, default=0):.0f} peers; "
                     f"{errors:.0f} failed exchanges in all\n")
    return "".join(lines) + ("\n" if lines else "")


def _intro(section: Section) -> str:
    st = section.settings
    n = st.get("gateway_replicas")
    return (
        f"Does the routing of section 6b hold when {n} gateway replicas share the traffic? Every "
        f"run has Envoy {st.get('envoy') or ''} (one worker) in front, on a static cluster of "
        f"the gateways' listeners with `lb_policy: ROUND_ROBIN` (the load balancer of a "
        f"Kubernetes Service or a cloud LB does the same), so the one-gateway row pays the same "
        f"extra hop. Behind it: one `poolgate serve`; {n} with their own in-flight counts (each "
        f"sees about a 1/{n} of every endpoint's load from its own requests, plus the scraped "
        f"waiting queues the default profile also scores, which lag a scrape); or {n} sharing "
        f"their counts through a redis-server (`--shared-load-redis`, exchanged every "
        f"{st.get('shared_interval')} s). With the `default` profile each gateway keeps its "
        f"own approximate prefix index, learnt from its own picks; with `precise` (where it "
        f"ran) every gateway builds the same index from the replicas' KV events. The fleet and "
        f"the workload are section 6b's "
        f"({st.get('replicas')} replicas with `--max-num-seqs {st.get('max_num_seqs')}`, "
        f"{st.get('groups')} system prompts of {st.get('system_prompt_len')} tokens with Zipf "
        f"popularity `--group-zipf {st.get('group_zipf')}`, Poisson {st.get('rate')} requests/s "
        f"for {st.get('duration')} s); every run a fresh fleet with the same seed, "
        f"{st.get('rounds')} interleaved round(s), medians. Target (issue 17): the {n} keep the "
        f"TTFT p90 and the output throughput of one within 10 %.\n\n")


def markdown(section: Section | None) -> str:
    """The whole section."""
    if section is None:
        return TITLE + f"Not measured yet: run `{HOW}`.\n"
    out = TITLE + _intro(section)
    out += (f"Measured {section.created_at} in {section.duration_s / 60:.0f} min "
            f"(`{HOW}`).\n\n")
    pairs = _pairs(section)
    base = pairs[0][1].name if pairs else None
    out += routing_table(section.rows, base, section.extra.get("sim_cpu_share", {})) + "\n\n"
    out += _summary(section)
    checks = replica_checks(section)
    out += checks_table(checks) + "\n\n"
    if any(c.passed is False for c in checks):
        out += ("What stands in the way of the target, measured apart (one gateway's routing "
                "on a machine carrying three gateways: `python -m benchmarks.replicas_control`): "
                "[scheduling.md, \"What stands between three replicas and one\"]"
                "(scheduling.md#what-stands-between-three-replicas-and-one-the-routing-not-the-"
                "machine).\n\n")
    out += "Front CPU per request, by process:\n\n" + _cpu_table(section) + "\n\n"
    out += _per_round(section) + _views(section)
    out += ("Commands (`$SIM_PORT`, `$PORT`, ... are free ports picked per run):\n\n```bash\n"
            + "\n".join(section.commands) + "\n```\n\n")
    return out + "".join(f"- {n}\n" for n in section.notes)

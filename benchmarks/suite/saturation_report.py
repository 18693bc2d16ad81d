"""The report's section on saturation with a C load client and the gateway's profile (issue 18;
pure: saved sections in, Markdown out)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.suite import _format as fmt
from benchmarks.suite.checks import added, pick_builds
from benchmarks.suite.model import Check, RunRow, Section
from benchmarks.suite.profiling import STAGES, frame_us, stage_table
from benchmarks.suite.saturation import (
    COMPILED,
    DIRECT,
    POOLGATE_DEFAULT,
    POOLGATE_RR,
    SATURATION,
    STREAM,
    VLLM_ROUTER_RR,
)
from benchmarks.suite.tables import errors_text, markdown_table

TITLE = "## 9. Saturation with a C load client (issue 18)\n\n"
HOW = "python -m benchmarks.suite --only saturation"

# Issue 18's targets, against vllm-router's round_robin in the same run.
MAX_RR_CPU_VS_VLLM_ROUTER = 1.0
MAX_DEFAULT_CPU_VS_VLLM_ROUTER = 1.25
MAX_PICK_US = {"64": 50.0, "512": 250.0}
MIN_CHUNKS_PER_CORE = 50_000.0

INTRO = """\
Which question this answers: how many requests per second each front serves, and what a request \
costs it, when neither the client nor the backends are the limit. Sections 1 and 4a answer a \
different one: what a front adds to a request at the rate `poolgate bench` (a Python client, \
about 4.6k requests/s on its own here) can drive; at that rate no front is saturated, and every \
front pays its per-request wake-ups without batching.

The client is `wrk -t1 -c64` (Debian's wrk 4.1, C) with `benchmarks/suite/wrk.lua`: tiny \
non-streamed completions (`max_tokens: 1`) posted as fast as 64 connections allow \
(**saturation**), and at **fixed rates** (wrk cannot hold a rate by itself and Debian ships \
neither wrk2 nor vegeta: the script's `delay()` hands out send times on a fixed schedule; \
latency is timed from the actual send, so a rate a front cannot hold shows as achieved \
requests/s below the rate). The backends are {backends}: the simulator is one Python process \
that serves about 9.5k tiny completions/s on a core, so behind it every front would measure \
the simulator; Envoy's `direct_response` replays, path by path, the answers the simulator gave \
to the same requests (completions, `/metrics`, `/v1/models`, the peers' probes and \
vllm-router's render/tokenize calls) for about 16 µs of CPU each. The **SSE relay** case \
streams {tokens}-token completions from the simulator itself (`--profile zero`), whose chunks \
are written one by one. Fronts: the client calling one backend (`direct`), Envoy {envoy} alone \
(`--concurrency 1`, round robin, the bootstrap `poolgate envoy-config` renders without the \
picker: the floor), `poolgate serve` with the default and the round-robin scheduler profiles \
(as `make` installs it, plain Python, and, in the **(mypyc)** rows, as `pip install .` installs \
it: the request path's hot modules compiled by mypyc, `setup.py`), and vllm-router and sglang-router in `round_robin` and `cache_aware` (from `.venv-peers/`). \
Everything shares the machine's {cores} cores, unpinned, as a gateway sized by requests per \
core would. Front CPU is the front's whole process tree (every thread, from \
`/proc/PID/task/*/schedstat`) over the measured window, divided by the requests (or SSE \
chunks) `wrk` completed in it. Each front is started, checked with one request, warmed up at \
saturation for {warmup:g} s, then measured; rows are the medians of {rounds} interleaved \
round(s).

"""


def _points(section: Section) -> Mapping[str, Mapping[str, Any]]:
    return dict(section.extra.get("points", {}))


def _point(section: Section, row: RunRow) -> Mapping[str, Any]:
    return _points(section).get(row.name, {})


def rows_of(section: Section, workload: str) -> list[RunRow]:
    """The rows of one workload, in run order."""
    points = _points(section)
    return [r for r in section.rows if points.get(r.name, {}).get("workload") == workload]


def find(section: Section, front: str, workload: str) -> RunRow | None:
    return section.row(f"{front} [{workload}]")


def _front(section: Section, row: RunRow) -> str:
    return str(_point(section, row).get("front", row.name))


def _ratio_to(row: RunRow, base: RunRow | None) -> str:
    if base is None or row.cpu_us_per_request is None or not base.cpu_us_per_request:
        return fmt.MISSING
    return fmt.ratio(row.cpu_us_per_request / base.cpu_us_per_request)


def saturation_table(section: Section) -> str:
    """Per front at saturation: requests/s, CPU per request (and against vllm-router's
    round_robin), latency, the backends' CPU per request."""
    base = find(section, VLLM_ROUTER_RR, SATURATION)
    body = []
    for r in rows_of(section, SATURATION):
        p = _point(section, r)
        body.append([_front(section, r), fmt.rate(r.request_throughput, "req/s"),
                     fmt.us(r.cpu_us_per_request), _ratio_to(r, base),
                     fmt.ms(r.e2e_p50, 2), fmt.ms(r.e2e_p99, 2),
                     fmt.us(p.get("backend_cpu_us")), errors_text(r)])
    return markdown_table(["front", "requests/s", "front CPU / req",
                           f"CPU vs {VLLM_ROUTER_RR}", "p50", "p99", "backends' CPU / req",
                           "errors"], body)


def rates_table(section: Section) -> str:
    """Per fixed rate and front: what was achieved, CPU per request, latency and the latency
    added over calling a backend directly at the same rate."""
    body = []
    for key in section.extra.get("workloads", []):
        if key in (SATURATION, STREAM):
            continue
        direct = find(section, DIRECT, key)
        for r in rows_of(section, key):
            p = _point(section, r)
            rate = p.get("rate")
            held = (rate is None or r.request_throughput >= 0.97 * float(rate))
            is_base = direct is None or r is direct
            body.append([
                key, _front(section, r),
                fmt.rate(r.request_throughput, "req/s") + ("" if held else " (not held)"),
                fmt.us(r.cpu_us_per_request), fmt.ms(r.e2e_p50, 2), fmt.ms(r.e2e_p99, 2),
                fmt.MISSING if is_base else fmt.ms(added(r.e2e_p50, direct.e2e_p50 if direct
                                                         else None), 2),
                fmt.MISSING if is_base else fmt.ms(added(r.e2e_p99, direct.e2e_p99 if direct
                                                         else None), 2),
                errors_text(r)])
    return markdown_table(["offered", "front", "achieved", "front CPU / req", "p50", "p99",
                           "added p50", "added p99", "errors"], body)


def chunks_per_core(section: Section, row: RunRow) -> float | None:
    """SSE chunks relayed per second of the front's CPU."""
    chunks = _point(section, row).get("chunks")
    if not chunks or not row.cpu_us_per_request:
        return None
    return float(chunks) * 1e6 / row.cpu_us_per_request


def stream_table(section: Section) -> str:
    """Per front relaying streams: streams and chunks per second, CPU per stream and per chunk,
    chunks per second per core of the front."""
    body = []
    for r in rows_of(section, STREAM):
        p = _point(section, r)
        chunks = p.get("chunks")
        per_chunk = (r.cpu_us_per_request / chunks
                     if r.cpu_us_per_request is not None and chunks else None)
        per_core = chunks_per_core(section, r)
        body.append([_front(section, r), fmt.rate(r.request_throughput, "streams/s"),
                     fmt.rate(r.request_throughput * chunks if chunks else None, "chunks/s"),
                     fmt.us(r.cpu_us_per_request), fmt.us(per_chunk),
                     fmt.MISSING if per_core is None else f"{per_core:,.0f}",
                     fmt.ms(r.e2e_p50, 1), fmt.us(p.get("backend_cpu_us")), errors_text(r)])
    return markdown_table(["front", "streams/s", "chunks/s", "front CPU / stream",
                           "front CPU / chunk", "chunks/s per core of the front",
                           "stream p50 (whole stream)", "simulator CPU / stream", "errors"], body)


def _stream_limit(section: Section) -> str:
    """What limits the streamed runs: the one-process simulator, when direct is no faster."""
    direct = find(section, DIRECT, STREAM)
    chunks = _point(section, direct).get("chunks") if direct else None
    if direct is None or not chunks:
        return ""
    return (f". The simulator writes about {direct.request_throughput * chunks:,.0f} chunks/s "
            "to the client on its own (the `direct` row) from one core, so it, not the front, "
            "sets the pace here: chunks/s per core is the chunks a front relayed over the CPU "
            "it spent on them, its relay cost per core rather than a saturation point")


def saturation_checks(section: Section | None, pick: Section | None) -> list[Check]:
    """Issue 18's targets: CPU per request and requests/s at saturation against vllm-router's
    round_robin (same run), the pick cost, the SSE relay's chunks per core."""
    checks: list[Check] = []
    base = find(section, VLLM_ROUTER_RR, SATURATION) if section else None
    theirs = base.cpu_us_per_request if base else None
    # The compiled build's rows (what `pip install .` installs) when the run has them.
    compiled = section is not None and find(section, POOLGATE_RR + COMPILED, SATURATION) is not None
    builds = ("", COMPILED) if compiled else ("",)
    for front, limit in [(name + build, limit) for build in builds
                         for name, limit in ((POOLGATE_RR, MAX_RR_CPU_VS_VLLM_ROUTER),
                                             (POOLGATE_DEFAULT, MAX_DEFAULT_CPU_VS_VLLM_ROUTER))]:
        ours = find(section, front, SATURATION) if section else None
        cpu = ours.cpu_us_per_request if ours else None
        ratio = None if cpu is None or not theirs else cpu / theirs
        wanted = (f"<= {VLLM_ROUTER_RR}'s {fmt.us(theirs)}" if limit == 1.0
                  else f"<= {limit:g}x {VLLM_ROUTER_RR}'s {fmt.us(theirs)}")
        checks.append(Check(f"CPU per request at saturation, {front} (C client)", wanted,
                            f"{fmt.us(cpu)} ({fmt.ratio(ratio)})",
                            None if ratio is None else ratio <= limit))
    rps = base.request_throughput if base else None
    for front in [name + build for build in builds for name in (POOLGATE_RR, POOLGATE_DEFAULT)]:
        ours = find(section, front, SATURATION) if section else None
        mine = ours.request_throughput if ours else None
        checks.append(Check(
            f"requests/s at saturation, {front} (C client)",
            f">= {VLLM_ROUTER_RR}'s {fmt.rate(rps, 'req/s')}",
            fmt.rate(mine, "req/s") + ("" if mine is None or not rps
                                       else f" ({fmt.ratio(mine / rps)})"),
            None if mine is None or rps is None else mine >= rps))
    for profile in pick_builds(pick):
        costs = pick.extra.get("us_per_pick", {}).get(profile, {}) if pick else {}
        build = profile.removeprefix("default")
        for size, limit in MAX_PICK_US.items():
            value = costs.get(size)
            checks.append(Check(
                f"pick cost at {size} endpoints (default profile{build}, warm index)",
                f"<= {fmt.us(limit)}", fmt.us(value),
                None if value is None else float(value) <= limit))
    for front in [name + build for build in builds for name in (POOLGATE_DEFAULT, POOLGATE_RR)]:
        row = find(section, front, STREAM) if section else None
        per_core = chunks_per_core(section, row) if section and row else None
        checks.append(Check(f"SSE relay, {front}: chunks/s per core",
                            f">= {MIN_CHUNKS_PER_CORE:,.0f}",
                            fmt.MISSING if per_core is None else f"{per_core:,.0f}",
                            None if per_core is None else per_core >= MIN_CHUNKS_PER_CORE))
    return checks


def _header(section: Section) -> str:
    foreign = section.extra.get("foreign_cpu_share")
    load = ("" if foreign is None
            else f"; other work on the machine used {fmt.pct(foreign)} of its CPU meanwhile")
    settings = ", ".join(f"{k}={v}" for k, v in section.settings.items())
    return (f"_Measured {section.created_at} in {section.duration_s:.0f} s{load}._ "
            f"Settings: `{settings}`\n")


def _rounds_note(section: Section) -> str:
    per_round = section.extra.get("per_round_cpu_us", {})
    parts = []
    for name, values in per_round.items():
        if len(values) > 1 and any(v is not None for v in values):
            parts.append(f"{name} " + " / ".join("-" if v is None else f"{v:.0f}"
                                                 for v in values))
    if not parts:
        return ""
    return "- front CPU per request by round, in µs: " + "; ".join(parts) + "\n"


def saturation_md(section: Section | None, pick: Section | None) -> str:
    out = "### 9a. Requests/s, CPU per request and added latency\n\n"
    if section is None:
        return out + f"Not measured yet: run `{HOW}` (or `make bench-saturation`).\n"
    st = section.settings
    out += INTRO.format(backends=st.get("backends", "?"), tokens=st.get("stream_tokens", "?"),
                        envoy=_envoy_version(st.get("envoy")), cores=_cores(section),
                        warmup=float(st.get("warmup_seconds", 0)), rounds=st.get("rounds", 1))
    out += _header(section) + "\n"
    out += f"**At saturation** (`-c{st.get('connections', 64)}`, as fast as the front answers)\n\n"
    out += saturation_table(section) + "\n\n"
    out += ("Latency at saturation is mostly the 64 requests queued in front of the slowest "
            "part (Little's law: 64 / requests/s), so the latency a front adds is read at the "
            "fixed rates, against the client calling a backend at the same rate.\n\n")
    out += "**At fixed rates**\n\n" + rates_table(section) + "\n\n"
    out += (f"**SSE relay** ({st.get('stream_tokens')}-token streams, `-c"
            f"{st.get('connections', 64)}`; a chunk is one SSE event){_stream_limit(section)}"
            "\n\n" + stream_table(section) + "\n\n")
    out += checks_md(saturation_checks(section, pick)) + "\n\n"
    out += _commands(section.commands) + "\n" + "".join(f"- {n}\n" for n in section.notes)
    return out + _rounds_note(section)


def _cores(section: Section) -> str:
    return str(section.extra.get("cores", "2"))


def _envoy_version(text: object) -> str:
    """`1.40.0` out of Envoy's `HASH/1.40.0/Clean/RELEASE/BoringSSL`."""
    if not isinstance(text, str):
        return ""
    parts = text.split("/")
    return parts[1] if len(parts) > 1 else text


def checks_md(checks: Sequence[Check]) -> str:
    return markdown_table(["target", "wanted", "measured", "verdict"],
                          [[c.what, c.target, c.measured, f"**{c.verdict}**"] for c in checks])


def _commands(commands: Sequence[str]) -> str:
    lines = "\n".join(commands)
    return ("Commands (`$SIM_PORT`, `$PORT`, ... are free ports picked per run; replica i "
            f"listens on `$SIM_PORT + i`; URL is the front's):\n\n```bash\n{lines}\n```\n")


PROFILE_INTRO = """\
Where a request's CPU goes in `poolgate serve` at saturation: the saturation section's instant \
backends and `wrk -c{connections}`, the gateway pinned to a CPU of its own and the client, the \
backends and the profiler to the other (so the gateway never waits for a CPU, which the \
profiler would count as work). Per scheduler profile, one run without the profiler gives \
requests/s and CPU per request (user and system time from `/proc/PID/stat`), then py-spy \
samples the gateway {rate} times a second for {seconds:g} s (`--native`: the Python stack with \
the C frames under it: uvloop, httptools, libc, the interpreter), {rounds} round(s). Each \
sample counts to the innermost stage of the request path on its stack \
(`benchmarks/suite/profiling.py` names the functions that mark each stage; a socket write \
counts to the stage that wrote, garbage collection to itself wherever it was triggered). A \
sample whose innermost frame is a libc system-call wrapper (`write`, `read`, `epoll_pwait`, \
...) is time in the kernel. Samples of the gateway's idle worker thread (waiting on its queue) \
are left out.

How samples become µs: py-spy stops the gateway to take a native sample, and on this VM the \
stop lands at a system call's return more often than the kernel's share of the CPU would have \
it (compare the two percentages under each profile below; and Envoy, which makes the same socket \
reads and writes per request, spends less CPU per request in all, in 9a, than these samples \
would put on poolgate's system calls alone). So the two kinds are calibrated apart: a \
stage's user-space samples divide the user time per request, its system-call samples the system \
time (both measured without the profiler), and "share" is of that CPU. "samples" is the raw \
share, for comparison.

"""


def _profile_line(name: str, p: Mapping[str, Any]) -> str:
    share = p.get("profiled_cpu_share")
    syscalls = sum(s["syscall_samples"] for s in p.get("stages", []))
    samples = p.get("samples") or 0
    cpu, system = p.get("cpu_us"), p.get("system_us")
    return (f"**poolgate {name}**: {fmt.rate(p.get('requests_per_s'), 'req/s')}, "
            f"{fmt.us(cpu)} of CPU per request ({fmt.us(p.get('user_us'))} user, "
            f"{fmt.us(system)} system) without the profiler; "
            f"{fmt.rate(p.get('profiled_requests_per_s'), 'req/s')} while sampled "
            f"(the gateway on its CPU {fmt.pct(share)} of the time; stopped by py-spy or "
            f"idle the rest); {samples} samples ({p.get('idle_samples', 0)} of the idle worker "
            f"thread left out), {fmt.pct(syscalls / samples if samples else None)} of them in "
            f"system calls against {fmt.pct(system / cpu if cpu and system is not None else None)}"
            f" of the CPU in `/proc`'s system time.\n\n")


def stages_table(profiles: Mapping[str, Mapping[str, Any]]) -> str:
    """One row per stage, per scheduler profile: µs per request, the part in system calls,
    the share of the CPU and of the samples."""
    tables = {name: {r["stage"]: r for r in stage_table(p, p.get("user_us"), p.get("system_us"))}
              for name, p in profiles.items()}
    stages = [s for s in STAGES if any(s in t for t in tables.values())]
    body = []
    for stage in stages:
        cells = [stage]
        for t in tables.values():
            r = t.get(stage)
            cells += ([fmt.MISSING] * 4 if r is None else
                      [fmt.us(r["us"]), fmt.us(r["syscall_us"]), fmt.pct(r["share"]),
                       fmt.pct(r["sample_share"])])
        body.append(cells)
    total = ["**total**"]
    for t in tables.values():
        rows = list(t.values())
        total += [fmt.us(sum(r["us"] for r in rows if r["us"] is not None)),
                  fmt.us(sum(r["syscall_us"] for r in rows if r["syscall_us"] is not None)),
                  fmt.pct(1.0 if rows else None), fmt.pct(1.0 if rows else None)]
    body.append(total)
    header = ["stage"]
    for name in tables:
        header += [f"{name}: µs / request", "of which system calls", "share", "samples"]
    return markdown_table(header, body)


def top_table(p: Mapping[str, Any], limit: int = 25) -> str:
    total = p.get("samples") or 0
    body = []
    for t in p.get("top", [])[:limit]:
        body.append([f"`{t['frame']}`",
                     fmt.us(frame_us(p, t, p.get("user_us"), p.get("system_us"))),
                     fmt.pct(t["self"] / total if total else None),
                     fmt.pct(t["total"] / total if total else None)])
    return markdown_table(["frame (self time)", "self µs / request", "self samples",
                           "samples with callees"], body)


def profile_md(section: Section | None) -> str:
    out = "### 9b. Where the gateway's CPU goes at saturation (py-spy)\n\n"
    if section is None:
        return out + f"Not measured yet: run `{HOW}`.\n"
    st = section.settings
    out += PROFILE_INTRO.format(connections=st.get("connections", 64), rate=st.get("sample_rate"),
                                seconds=float(st.get("seconds", 0)), rounds=st.get("rounds", 1))
    out += _header(section) + "\n"
    profiles = section.extra.get("profiles", {})
    out += "".join(_profile_line(name, p) for name, p in profiles.items())
    out += "**Per request, by stage**\n\n" + stages_table(profiles) + "\n\n"
    for name, p in profiles.items():
        out += (f"**poolgate {name}: the top {min(25, len(p.get('top', [])))} frames by self "
                f"time**\n\n" + top_table(p) + "\n\n")
    lines = "\n".join(section.commands)
    out += f"To reproduce (the gateway's PID as `$GATEWAY_PID`):\n\n```bash\n{lines}\n```\n"
    return out + "".join(f"- {n}\n" for n in section.notes)


def markdown(section: Section | None, profile: Section | None, pick: Section | None) -> str:
    """Section 7 of the report."""
    return TITLE + saturation_md(section, pick) + "\n" + profile_md(profile)

"""Rendering `docs/benchmarks.md` from the saved sections (pure: data in, Markdown out)."""

from __future__ import annotations

from collections.abc import Mapping

from benchmarks.suite import _format as fmt
from benchmarks.suite import (
    capacity_report,
    epp_report,
    multicluster,
    precise_report,
    replicas_report,
    saturation_report,
)
from benchmarks.suite.checks import (
    overhead_checks,
    peer_checks,
    pick_checks,
    profile_row,
    routing_checks,
)
from benchmarks.suite.machine import Machine
from benchmarks.suite.model import QUEUE_FLOOR, Check, Section
from benchmarks.suite.tables import (
    checks_table,
    markdown_table,
    overhead_table,
    pick_table,
    routing_table,
)

PLOT_DIR = "benchmarks"  # relative to the report
# Above this share of one core the single-threaded simulator may be what limits a run.
SIM_BUSY = 0.8

_HOW = """\
## How to reproduce

```bash
make bench          # overhead, routing, pick and multicluster sections (~11 min on 2 cores); regenerates this file
make bench-peers    # installs vllm-router and sglang-router into .venv-peers/, runs the peer sections (~10 min)
make bench-epp      # Envoy + poolgate epp against poolgate serve, Envoy alone and the peers: section 6 (~16 min)
make bench-capacity # the highest rate under a TTFT p90 target, poolgate and the peers, and the fleet's ceiling: section 7
make bench-saturation # every front at saturation with wrk (a C client), fixed rates, SSE relay, and poolgate's profile: section 9 (~11 min)
make bench-precise  # precise vs approximate vs round-robin prefix routing with KV caches too small for every prefix: section 10
python -m benchmarks.suite --quick            # the same in ~2 minutes, smaller samples
python -m benchmarks.suite --only routing     # one section; the others are kept as saved
python -m benchmarks.suite --render-only      # rewrite this file from the saved JSON
```

Options: `--out PATH` (default `docs/benchmarks.md`; JSON and plots go to `PATH` without `.md`),
`--only overhead,routing,pick,multicluster,peers,epp,capacity,replicas,saturation` (default: the first four), `--quick`, `--peers-venv PATH`
(default `.venv-peers`), `--rate R` (routing sections: requests/s instead of the chosen rate),
`--keep-logs` (keep every process's log; the directory is printed), `--render-only`. Exit status
0; 1 when a section failed (the others still ran and are saved); 2 on a usage error; 130 when
interrupted.

Every section starts its own processes on free 127.0.0.1 ports (the simulator, the gateway, the
peer routers; one at a time in front of the fleet) and stops them by PID at the end, also on
failure or Ctrl-C. The load generator is `poolgate bench`'s library (`poolgate.bench`), running in
the suite's own process; its exact equivalent command line is listed per section. Raw figures are
in `docs/benchmarks/*.json`; this file is regenerated from them on every run.

All processes share the machine's cores: the client, the simulator and the front under test compete
for CPU, so absolute latencies are those of a loaded 2-core box. "client lateness p99" is how late
the open-loop client started its requests against their Poisson schedule; while it stays at a few
milliseconds, the numbers describe the servers, not the client.
"""


def _machine(m: Machine) -> str:
    pkgs = ", ".join(f"{k} {v}" for k, v in sorted(m.packages.items()))
    peers = ", ".join(f"{k} {v}" for k, v in sorted(m.peers.items())) or "not installed"
    mem = "unknown" if m.memory_gib is None else f"{m.memory_gib} GiB"
    return (f"## Machine\n\n- {m.cores} cores: {m.cpu_model}; memory {mem}; {m.os}\n"
            f"- Python {m.python}; {pkgs}\n- peer routers (in `.venv-peers/`): {peers}\n")


def _commands(section: Section, ports: bool = True) -> str:
    lines = "\n".join(section.commands)
    what = ("Commands (`$SIM_PORT`, `$PORT`, ... are free ports picked per run; replica i listens "
            "on `$SIM_PORT + i`):" if ports else "Commands:")
    return f"{what}\n\n```bash\n{lines}\n```\n"


def _notes(section: Section) -> str:
    return "".join(f"- {n}\n" for n in section.notes)


def _header(section: Section) -> str:
    foreign = section.extra.get("foreign_cpu_share")
    load_text = ("" if foreign is None else
                 f"; other work on the machine used {fmt.pct(foreign)} of its CPU meanwhile")
    return (f"_Measured {section.created_at} in {section.duration_s:.0f} s{load_text}._"
            f" Settings: `{_settings_text(section.settings)}`\n")


def _settings_text(settings: Mapping[str, object]) -> str:
    return ", ".join(f"{k}={v}" for k, v in settings.items())


def _plot(section: Section) -> str:
    if not section.plot:
        return ""
    return f"\n![{section.name}]({PLOT_DIR}/{section.plot})\n"


def _missing(name: str, how: str) -> str:
    return f"Not measured yet: run `{how}`.\n"


def overhead_md(section: Section | None) -> str:
    title = "## 1. Gateway overhead (issue 3)\n\n"
    intro = ("Which question this answers: what the gateway adds to a request's latency and "
             "CPU at the rate a Python client (`poolgate bench`) can drive, where no front is "
             "saturated; section 9 answers how many requests/s a front serves and what each "
             "costs it at saturation, with a C client (`wrk`) that is not the limit.\n\n"
             "poolgate in front of one zero-latency simulated replica (`--profile zero`) against "
             "the client calling the replica directly (one replica, so that \"direct\" is one URL "
             "and the comparison is like for like): closed loop, 64 requests in flight, tiny "
             "non-streaming completions (8-token prompt, `max_tokens: 1`). Added latency is the "
             "gateway run's percentile minus the direct run's. At 64 in flight on 2 cores every "
             "process is CPU-bound, so latency there is mostly queueing for CPU; the `(c=1)` rows "
             "repeat the pair with one request at a time, which shows the per-request cost "
             "without that queueing. The `(pinned)` rows repeat direct and the front at 64 in "
             "flight with the client and the simulator pinned to one CPU and the front to the "
             "other (`sched_setaffinity`, every thread), as a gateway on cores of its own would "
             "run: their added latency leaves out the front's wait for a CPU the client and the "
             "simulator are using (the simulator still spends more CPU per request behind any "
             "front than with the client's bursts, and that stays in). Every row is the median "
             "of interleaved rounds (see the notes). At 64 in flight the p99 of a few-second run "
             "is noisy (an added p99 can come out negative). CPU per request is the front process's user+system time "
             "(`/proc/PID/stat`, children included) over the measured phase divided by its "
             "requests.\n\n")
    if section is None:
        return title + intro + _missing("overhead", "python -m benchmarks.suite --only overhead")
    sim_cpu = section.extra.get("sim_cpu_us_per_request", {})
    return (title + intro + _header(section) + "\n" + overhead_table(section.rows, sim_cpu)
            + "\n\n" + checks_table(overhead_checks(section)) + "\n" + _plot(section) + "\n"
            + _commands(section) + "\n" + _notes(section))


def routing_md(section: Section | None) -> str:
    title = "## 2. Routing quality: scheduler profiles (issue 4)\n\n"
    if section is None:
        return title + _missing("routing", "python -m benchmarks.suite --only routing")
    st = section.settings
    intro = (
        f"{st.get('replicas')} simulated replicas with the `{st.get('sim_profile')}` timing "
        f"profile and a finite KV cache of {st.get('kv_cache_blocks')} blocks x 16 tokens each; "
        f"the shared-prefix workload: {st.get('groups')} system prompts of "
        f"{st.get('system_prompt_len')} tokens, {st.get('prompts_per_group')} questions of "
        f"{st.get('question_len')} tokens each, {st.get('output_len')} output tokens, streamed "
        f"chat, Poisson arrivals at {st.get('rate')} requests/s for {st.get('duration')} s after "
        f"{st.get('warmup')} warm-up requests. Every run gets a fresh fleet with the same seed. "
        f"The simulator runs at `--time-scale {st.get('time_scale')}` (simulated time runs at "
        f"{st.get('time_scale')}x wall-clock time), so the simulated H100s never wait for the "
        f"Python process that simulates them; every latency below is wall-clock as the client "
        f"saw it (multiply by {st.get('time_scale')} for simulated H100 seconds; ratios are "
        f"unchanged). The gateway runs with `--scrape-interval "
        f"{0.05 / float(st.get('time_scale') or 1):g} --metrics-staleness "
        f"{2.0 / float(st.get('time_scale') or 1):g}`: its defaults (0.05 s, 2 s) divided by the "
        f"time scale, i.e. the default freshness in simulated time; scraping 8 replicas every "
        f"0.05 s of wall-clock time would only spend about half a core of the shared CPU on "
        f"rendering `/metrics` pages.\n\n"
        f"The rate is chosen above what round-robin can serve on this fleet (about 11 "
        f"requests/s of wall-clock time: a round-robin router offered 8, 14 and 18 requests/s "
        f"served 7.4, 11.0 and 11.3 when the rate was chosen), and just below what a "
        f"prefix-affine router serves (poolgate's default offered 28 requests/s in a 10 s run "
        f"served 22.4 including its drain; see docs/scheduling.md, \"How the defaults were "
        f"chosen\"): near that ceiling a spill, a replica's queue running ahead or a badly "
        f"placed prefix costs latency and throughput, so the routers differ; at 20 requests/s "
        f"every prefix-affine router had slack and they tied. A "
        f"router that spreads each system prompt over all replicas makes every replica hold "
        f"every prefix; {st.get('groups')} prefixes of {st.get('system_prompt_len')} tokens do "
        f"not fit in {st.get('kv_cache_blocks')} blocks, the cache thrashes and prefill work "
        f"multiplies, so its queues grow for the whole run. Output tokens/s counts until the "
        f"last response, so a router that falls behind is charged for draining its backlog.\n\n"
        f"Waiting queues are scraped from every replica's `/metrics` every "
        f"{st.get('scrape_interval')} s; a scrape counts as unbalanced when some replica waits "
        f"more than 2x the mean of that scrape and more than {QUEUE_FLOOR:g} requests. "
        f"\"sim CPU\" is the simulator process's CPU over the run as a share of one core"
        f"{_sim_verdict(section)}\n\n")
    baseline = profile_row("round-robin") if section.row(profile_row("round-robin")) else None
    checks = routing_checks(section) if section.row(profile_row("default")) else []
    share = section.extra.get("sim_cpu_share", {})
    return (title + intro + _header(section) + "\n"
            + routing_table(section.rows, baseline, share) + "\n\n"
            + (checks_table(checks) + "\n\n" if checks else "") + _plot(section) + "\n"
            + _commands(section) + "\n" + _notes(section))


def _sim_verdict(section: Section) -> str:
    """Whether the one-process simulator could have limited the run (it has one core at most)."""
    shares = [float(v) for v in section.extra.get("sim_cpu_share", {}).values()]
    if not shares:
        return "."
    worst = max(shares)
    if worst < SIM_BUSY:
        return f": at most {fmt.pct(worst)}, so the simulator was never the bottleneck."
    return (f": up to {fmt.pct(worst)}, so the simulator may have limited some runs; lower "
            f"`--time-scale` or the rate.")


def pick_md(section: Section | None) -> str:
    title = "## 3. Pick cost (issue 4)\n\n"
    intro = ("Microseconds per `Scheduler.pick` + `on_picked` in one process, from "
             "`benchmarks.pick.measure_pick_cost`: the editable install (plain Python), and "
             "the \"(mypyc)\" rows poolgate built as `pip install .` builds it (the pick's "
             "modules compiled by mypyc, `setup.py`).\n\n")
    if section is None:
        return title + intro + _missing("pick", "python -m benchmarks.suite --only pick")
    costs = section.extra.get("us_per_pick", {})
    sizes = [int(n) for n in section.settings.get("sizes", [])]
    table = pick_table(costs, sizes) + "\n\n" + checks_table(pick_checks(section)) if costs else ""
    return (title + intro + _header(section) + "\n" + table + "\n\n"
            + _commands(section, ports=False) + "\n" + _notes(section))


PEER_CALLS = """\
What the peers call on a worker (observed against the simulator with these versions):

| peer | at start | per request | the simulator's answer |
| --- | --- | --- | --- |
| vllm-router | `GET /health` (until 200) | `round_robin`: the request only. `cache_aware`: `POST /v1/chat/completions/render` (or `/v1/completions/render`), and `POST /tokenize` where it needs token ids, before the request, to match prefixes on token ids | 200 with the prompt's token ids from the simulator's tokenizer, the same ids the simulated engine caches (docs/simulator.md); its debug log shows real match rates (`Cache prefix decision ... match_rate=0.88`), as against vLLM (without these endpoints the simulator answered 404, the router logged `reason="render_unavailable"` and its hit rate fell to `round_robin`'s). The extra round trip per request is part of its measured cost (section 4a) |
| sglang-router | `GET /health`; an HTTP/2 (gRPC) probe; `GET /server_info`, `/get_server_info`, `/model_info`, `/get_model_info` | the request only | SGLang-shaped model and server info (model path, served name, context length, limits) and a refused HTTP/2 preface: it registers the worker under the served model name, tries to load a tokenizer of that name from Hugging Face (which fails offline in about 40 ms) and routes on text |

Both serve `GET /v1/models` themselves. Neither fetched `/metrics` from the workers during our
runs: their load signal is their own count of requests in flight.
"""


def peers_md(over: Section | None, route: Section | None) -> str:
    title = "## 4. Peers: vllm-router and sglang-router (issue 7)\n\n"
    intro = ("Which question this answers: the same as sections 1 and 2, for the peer "
             "routers next to poolgate (their overhead at the Python client's rate, their "
             "routing quality); section 9 compares the same routers at saturation with a C "
             "client.\n\n"
             "The same fleets, workloads and seeds as sections 1 and 2, with each peer router "
             "from PyPI (installed by `make bench-peers` into `.venv-peers/`, never a dependency "
             "of poolgate) in `round_robin` and in `cache_aware`, every other flag at its "
             "default, next to poolgate's default profile. Router CPU is the router process's "
             "(all its threads). The `(c=1)` rows repeat direct and each front with one request "
             "at a time (added latency without queueing for a CPU), and the `(pinned)` rows "
             "give each front a CPU of its own, as in section 1.\n\n")
    out = title + intro
    out += "### 4a. Overhead\n\n"
    if over is None:
        out += _missing("peers", "make bench-peers")
    else:
        sim_cpu = over.extra.get("sim_cpu_us_per_request", {})
        out += (_header(over) + "\n" + overhead_table(over.rows, sim_cpu) + "\n" + _plot(over)
                + "\n" + _commands(over) + "\n" + _notes(over))
    out += "\n### 4b. Routing quality\n\n"
    if route is None:
        out += _missing("peers", "make bench-peers")
    else:
        baseline = next((r.name for r in route.rows if r.kind == "poolgate"), None)
        out += (_header(route) + "\n"
                + routing_table(route.rows, baseline, route.extra.get("sim_cpu_share", {})) + "\n"
                + _plot(route) + "\n" + _commands(route) + "\n" + _notes(route))
    return out + "\n" + PEER_CALLS


def summary_checks(sections: Mapping[str, Section]) -> list[tuple[str, Check]]:
    """Every target with the issue it comes from."""
    out: list[tuple[str, Check]] = []
    if (s := sections.get("overhead")) is not None:
        out += [("3", c) for c in overhead_checks(s)]
    if (s := sections.get("routing")) is not None and s.row(profile_row("default")):
        out += [("4", c) for c in routing_checks(s)]
    if (s := sections.get("pick")) is not None:
        out += [("4", c) for c in pick_checks(s)]
    out += [("7", c) for c in peer_checks(sections.get("peers-overhead"),
                                           sections.get("peers-routing"))]
    out += [("17", c) for c in capacity_report.capacity_checks(sections.get("capacity"))]
    out += [("17", c) for c in replicas_report.replica_checks(sections.get("replicas"))]
    out += [("17", c) for c in precise_report.precise_checks(sections.get("precise"))]
    if sections.get("saturation") is not None:
        out += [("18", c) for c in saturation_report.saturation_checks(
            sections.get("saturation"), sections.get("pick"))]
    return out


def render(sections: Mapping[str, Section], machine: Machine, generated_at: str) -> str:
    """The whole of `docs/benchmarks.md`."""
    checks = summary_checks(sections)
    summary = (markdown_table(["issue", "target", "wanted", "measured", "verdict"],
                              [[i, c.what, c.target, c.measured, f"**{c.verdict}**"]
                               for i, c in checks])
               if checks else "No section with a target has been measured yet.")
    return "\n".join([
        "# Benchmarks",
        "",
        f"Generated by `python -m benchmarks.suite` ({generated_at}); do not edit by hand: "
        "`make bench`, `make bench-peers`, `make bench-epp` and `make bench-saturation` rewrite this file from `docs/benchmarks/*.json`.",
        "",
        "## Targets",
        "",
        summary,
        "",
        _machine(machine),
        _HOW,
        overhead_md(sections.get("overhead")),
        routing_md(sections.get("routing")),
        pick_md(sections.get("pick")),
        multicluster.markdown(sections.get("multicluster"), PLOT_DIR),
        peers_md(sections.get("peers-overhead"), sections.get("peers-routing")),
        epp_report.markdown(sections.get("epp-cost"), sections.get("epp-routing")),
        capacity_report.markdown(sections.get("capacity")),
        replicas_report.markdown(sections.get("replicas")),
        saturation_report.markdown(sections.get("saturation"), sections.get("saturation-profile"),
                                   sections.get("pick")),
        precise_report.markdown(sections.get("precise")),
    ])

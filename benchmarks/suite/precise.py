"""Issue 17, item 3: precise against approximate prefix routing where guessing goes wrong.

Many prefix groups, small KV caches: the system prompts of all groups together need several
times the fleet's KV cache, so the replicas evict prefixes all the time. The approximate index
(`prefix-cache-scorer` in poolgate's `default` profile) records what this gateway sent where and
keeps believing a replica holds a prefix it has long evicted; the precise one
(`precise-prefix-cache-scorer`, fed by the replicas' KV events) sees every eviction. Three
profiles on the same fleet and workload: `default`, `precise` (the default's plugins with the
precise scorer in the prefix scorer's place: `precise-profile.yaml`) and `round-robin`. A
second case adds traffic that reaches the replicas around the gateway (`direct_load`): only
the precise scorer learns what it caches and evicts.

Every run gets a fresh fleet publishing KV events (for every profile: the suite subscribes to
them itself and counts re-prefilled prefixes, `kv_history`), warms up, then measures; the
replicas' own prefix-cache counters are read around the measured phase. The list of runs is
repeated `rounds` times, interleaved, and each row holds the medians.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.suite.commands import (
    ADMIN_PORT,
    CONFIG_DIR,
    HOST,
    PORT,
    SimSpec,
    display,
    serve_argv,
    sim_argv,
    time_scaled_gateway_flags,
)
from benchmarks.suite.direct_load import DirectSummary, DirectTraffic
from benchmarks.suite.epp import bench_command
from benchmarks.suite.harness import slug
from benchmarks.suite.kv_history import CacheCounts, CacheObserver, publishers
from benchmarks.suite.manifests import ENDPOINTS_FILE, write_config_dir
from benchmarks.suite.model import RunRow, Section, median_row
from benchmarks.suite.processes import (
    Managed,
    ProcessGroup,
    free_port,
    free_port_range,
    wait_file,
    wait_ready,
)
from benchmarks.suite.settings import RoutingSettings
from poolgate.bench import (
    BenchConfig,
    BenchError,
    LengthSpec,
    LoadConfig,
    Target,
    Workload,
    WorkloadConfig,
    run_benchmark,
)
from poolgate.bench.cpu import cpu_seconds
from poolgate.scheduling.interfaces import LLMRequest
from poolgate.scheduling.prefix.hashing import block_hashes, prefix_text
from poolgate.scheduling.scorers.prefix_cache import Params as ApproximateParams

PROFILE_FILE = Path(__file__).with_name("precise-profile.yaml")
PRECISE = "precise"
APPROXIMATE = "default"
ROUND_ROBIN = "round-robin"
PROFILES = (APPROXIMATE, PRECISE, ROUND_ROBIN)
TOPIC = "kv"
# The prefix-cache counters the simulator keeps per replica, as vLLM names them (in tokens).
QUERIES = "vllm:prefix_cache_queries"
HITS = "vllm:prefix_cache_hits"
SUCCESS = "vllm:request_success"
# vLLM's default KV block size, which the simulator uses unless told otherwise.
BLOCK_SIZE = 16
# Closed-loop concurrency of the warm-up, as `poolgate bench --warmup N --rate R` warms up (the
# shown bench command is then exact; the measured phase is open loop).
WARMUP_CONCURRENCY = 4


@dataclass(frozen=True, slots=True)
class PreciseSettings:
    """The fleet and workload (`routing`), the groups' skew, the share of `routing.rate` that
    goes straight to the replicas in the second case (0: no second case), the profiles and the
    rounds."""

    routing: RoutingSettings
    group_zipf: float
    direct_share: float
    rounds: int = 1
    profiles: tuple[str, ...] = PROFILES


def precise_settings(quick: bool) -> PreciseSettings:
    """128 system prompts of 1,024 tokens (64 blocks each: 8,192 blocks) on 8 replicas of 512
    blocks (4,096 in all): every prefix twice over, before counting the blocks of the requests
    being served (about 9 each). Why these numbers: docs/scheduling.md, "When precise beats
    approximate"."""
    routing = RoutingSettings(
        fleet=SimSpec(replicas=8, profile="h100-llama3-8b", time_scale=0.2, kv_cache_blocks=512),
        rate=14.0, duration=15.0 if quick else 45.0, warmup=32 if quick else 64, groups=128,
        prompts_per_group=16, system_prompt_len=1024, question_len=64, output_len=64,
        profiles=PROFILES)
    return PreciseSettings(routing=routing, group_zipf=0.6, direct_share=0.25,
                           rounds=1 if quick else 3)


def row_name(profile: str, direct: bool) -> str:
    return f"{profile} + direct traffic" if direct else profile


def cases(s: PreciseSettings) -> list[tuple[str, bool]]:
    """(profile, with direct traffic) of every run of one round, in order."""
    out = [(p, False) for p in s.profiles]
    if s.direct_share > 0:
        out += [(p, True) for p in s.profiles]
    return out


def rates(s: PreciseSettings, direct: bool) -> tuple[float, float]:
    """Requests/s through the gateway and straight to the replicas: the same total in both
    cases, so that the second differs from the first only in who sends a share of it."""
    rate = s.routing.rate
    return (rate * (1 - s.direct_share), rate * s.direct_share) if direct else (rate, 0.0)


def prefix_blocks(s: PreciseSettings) -> int:
    """KV blocks the system prompts of every group need together."""
    r = s.routing
    return r.groups * (r.system_prompt_len // BLOCK_SIZE)


def fleet_blocks(s: PreciseSettings) -> int | None:
    f = s.routing.fleet
    return None if f.kv_cache_blocks is None else f.kv_cache_blocks * f.replicas


# -- the precise profile ---------------------------------------------------------------------

def profile_template() -> dict[str, Any]:
    """`precise-profile.yaml` as data."""
    loaded = yaml.safe_load(PROFILE_FILE.read_text())
    if not isinstance(loaded, dict):
        raise BenchError(f"{PROFILE_FILE}: not a scheduler profile")
    return loaded


def precise_profile(replicas: list[str], pub: int | str, replay: int | str) -> dict[str, Any]:
    """The template with where replica i publishes (`pub + i`) and answers replays."""
    profile = profile_template()
    for plugin in profile["plugins"]:
        if plugin["type"] == "precise-prefix-cache-scorer":
            kv = plugin["params"]["kvEventsConfig"]
            kv["endpoints"] = {a: _port_url(pub, i) for i, a in enumerate(replicas)}
            kv["replayEndpoints"] = {a: _port_url(replay, i) for i, a in enumerate(replicas)}
    return profile


def _port_url(base: int | str, i: int) -> str:
    port = base + i if isinstance(base, int) else f"$(({base.lstrip('$')}+{i}))"
    return f"tcp://{HOST}:{port}"


def kv_events_config(pub: int | str, replay: int | str) -> str:
    """The simulator's `--kv-events-config` (vLLM's JSON): replica i on `pub + i`."""
    return json.dumps({"enable_kv_cache_events": True, "publisher": "zmq",
                       "endpoint": f"tcp://*:{pub}", "replay_endpoint": f"tcp://*:{replay}",
                       "topic": TOPIC}, separators=(",", ":"))


# -- what the approximate index can hold -------------------------------------------------------

def approximate_keys_per_group(config: BenchConfig, warmup: int, measured: int) -> list[int]:
    """Per group, largest first, the distinct keys `prefix-cache-scorer` (at its default block
    size and `maxBlocks`) files for the requests of the group the gateway sends: the warm-up's
    `warmup` and the measured phase's first `measured`."""
    params = ApproximateParams()
    workload = Workload(config)
    keys: dict[int | None, set[int]] = {}
    for r in [*workload.requests(warmup, warmup=True), *workload.requests(measured)]:
        body = orjson.loads(r.body)
        req = LLMRequest(model=body["model"], messages=body.get("messages"),
                         prompt_text=body.get("prompt"))
        keys.setdefault(r.group, set()).update(
            block_hashes(req.model, prefix_text(req), params.block_size, params.max_blocks))
    return sorted((len(v) for v in keys.values()), reverse=True)


def approximate_index_bound(keys_per_group: list[int],
                            prefixes: dict[str, int]) -> dict[str, Any]:
    """The most keys the approximate index can have filed per replica, given how many prefixes
    each replica was sent (the largest groups' keys, that many of them), and whether that fits
    its bounds: then it never evicted anything, so it still believed in every prefix it sent."""
    params = ApproximateParams()
    per = [sum(keys_per_group[:m]) for m in prefixes.values()]
    most = max(per, default=0)
    return {"max_prefixes_per_replica": max(prefixes.values(), default=0),
            "max_keys_per_replica": most, "keys_total": sum(per),
            "never_forgot": (most <= params.max_blocks_per_endpoint
                             and sum(per) <= params.max_blocks_total)}


# -- one run ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class EventFleet:
    """A running simulated fleet publishing KV events."""

    process: Managed
    urls: tuple[str, ...]
    addresses: list[str]
    config_dir: Path
    pub: int
    replay: int


def sim_events_argv(spec: SimSpec, port: int | str, endpoints: Path, pub: int | str,
                    replay: int | str) -> list[str]:
    return [*sim_argv(spec, port, endpoints), "--kv-events-config", kv_events_config(pub, replay)]


def ranges_apart(bases: list[int], width: int) -> bool:
    """Whether port ranges of `width` starting at `bases` are disjoint."""
    ordered = sorted(bases)
    return all(b - a >= width for a, b in itertools.pairwise(ordered))


async def start_event_fleet(group: ProcessGroup, spec: SimSpec, workdir: Path) -> EventFleet:
    config_dir = workdir / "config"
    endpoints = write_config_dir(config_dir)
    endpoints.unlink(missing_ok=True)
    port, pub, replay = ranges = [free_port_range(spec.replicas) for _ in range(3)]
    if not ranges_apart(ranges, spec.replicas):
        raise BenchError("the free port ranges of the fleet overlap; run the section again")
    proc = group.start("sim", sim_events_argv(spec, port, endpoints, pub, replay))
    urls = tuple(f"http://{HOST}:{port + i}" for i in range(spec.replicas))
    await wait_file(endpoints, proc)
    await wait_ready([f"{u}/health" for u in urls], proc)
    addresses = [f"{HOST}:{port + i}" for i in range(spec.replicas)]
    return EventFleet(proc, urls, addresses, config_dir, pub, replay)


@dataclass(frozen=True, slots=True)
class Gateway:
    url: str
    admin: str
    pid: int


def gateway_extra(profile: str, fleet: EventFleet, workdir: Path,
                  time_scale: float) -> tuple[str, ...]:
    """`poolgate serve` flags for `profile` (the precise one: its profile file, written)."""
    flags = time_scaled_gateway_flags(time_scale)
    if profile != PRECISE:
        return flags
    path = workdir / PROFILE_FILE.name  # not in the config directory: serve reads that as manifests
    path.write_text(yaml.safe_dump(precise_profile(fleet.addresses, fleet.pub, fleet.replay),
                                   sort_keys=False))
    return (*flags, "--scheduler-config", str(path))


def shown_commands(profile: str, time_scale: float) -> str:
    flags = time_scaled_gateway_flags(time_scale)
    if profile == PRECISE:
        flags = (*flags, "--scheduler-config", PROFILE_FILE.name)
    return display(serve_argv(CONFIG_DIR, PORT, ADMIN_PORT, profile, flags))


async def start_gateway(group: ProcessGroup, profile: str, fleet: EventFleet, workdir: Path,
                        time_scale: float) -> Gateway:
    port, admin = free_port(), free_port()
    extra = gateway_extra(profile, fleet, workdir, time_scale)
    proc = group.start(f"gateway-{profile}", serve_argv(fleet.config_dir, port, admin, profile,
                                                        extra))
    await wait_ready([f"http://{HOST}:{admin}/readyz"], proc)
    return Gateway(f"http://{HOST}:{port}", f"http://{HOST}:{admin}", proc.pid)


def add_samples(out: dict[str, float], text: str, wanted: tuple[str, ...]) -> None:
    """Add to `out` every sample of `text` (Prometheus exposition) whose family is in `wanted`,
    summed over labels under the family's name and per label as `family{label=value}`."""
    for family in text_string_to_metric_families(text):
        if family.name not in wanted:
            continue
        for sample in family.samples:
            if sample.name.endswith("_created"):
                continue
            out[family.name] = out.get(family.name, 0.0) + sample.value
            for k, v in sample.labels.items():
                key = f"{family.name}{{{k}={v}}}"
                out[key] = out.get(key, 0.0) + sample.value


async def scrape(urls: list[str], wanted: tuple[str, ...]) -> dict[str, float]:
    """`add_samples` over every URL's /metrics page."""
    out: dict[str, float] = {}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        for url in urls:
            async with session.get(url) as resp:
                add_samples(out, await resp.text(), wanted)
    return out


def server_hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Prefix-cache hits / queries (tokens) of the fleet between two scrapes."""
    queries = after.get(QUERIES, 0.0) - before.get(QUERIES, 0.0)
    hits = after.get(HITS, 0.0) - before.get(HITS, 0.0)
    return hits / queries if queries > 0 else None


@dataclass
class PreciseRun:
    """One measured run: its row and what the row cannot hold."""

    row: RunRow
    profile: str
    direct: bool
    server_hit_rate: float | None
    served: float  # requests the replicas finished in the measured window (both streams)
    cache: CacheCounts
    direct_summary: DirectSummary | None = None
    kv_state: dict[str, float] = field(default_factory=dict)  # the precise gateway's view
    sim_cpu_share: float | None = None  # the simulator's CPU over the measured phase, of 1 core
    # Prefixes per replica and, for the approximate profile, what its index can have filed.
    index_bound: dict[str, Any] = field(default_factory=dict)

    @property
    def reprefill_share(self) -> float | None:
        """Prefixes stored again after their eviction, per request the replicas finished."""
        return self.cache.roots_stored_again / self.served if self.served > 0 else None

    def to_dict(self) -> dict[str, Any]:
        return {"profile": self.profile, "direct": self.direct,
                "server_hit_rate": self.server_hit_rate, "served": self.served,
                "cache": dataclasses.asdict(self.cache),
                "reprefill_share": self.reprefill_share,
                "direct_summary": (None if self.direct_summary is None
                                   else dataclasses.asdict(self.direct_summary)),
                "kv_state": self.kv_state, "sim_cpu_share": self.sim_cpu_share,
                "index_bound": self.index_bound}


def bench_config(s: PreciseSettings, rate: float | None = None) -> BenchConfig:
    """Open-loop Poisson shared-prefix chat with Zipf-skewed groups, streamed, at `rate`
    (`s.routing.rate` when None)."""
    r = s.routing
    return BenchConfig(
        workload=WorkloadConfig(kind="shared-prefix", seed=r.seed, model=r.fleet.model,
                                groups=r.groups, prompts_per_group=r.prompts_per_group,
                                system_prompt_len=r.system_prompt_len, group_zipf=s.group_zipf,
                                question_len=LengthSpec.fixed(r.question_len),
                                output_len=LengthSpec.fixed(r.output_len)),
        load=LoadConfig(rate=r.rate if rate is None else rate, duration=r.duration, warmup=0,
                        arrival="poisson"),
        api="chat", stream=True, timeout=600.0, scrape_interval=r.scrape_interval,
        cpu_children=True)


def warmup_config(config: BenchConfig, warmup: int) -> BenchConfig:
    """`warmup` requests of the warm-up stream (closed loop), then one measured request."""
    return dataclasses.replace(
        config, load=LoadConfig(concurrency=WARMUP_CONCURRENCY, requests=1, warmup=warmup),
        scrape_urls=())


KV_FAMILIES = ("poolgate_kv_events_endpoints", "poolgate_kv_events_gaps",
               "poolgate_kv_events_replays", "poolgate_kv_events_blocks_dropped")
SIM_FAMILIES = (QUERIES, HITS, SUCCESS)


async def run_once(profile: str, direct: bool, s: PreciseSettings,
                   workdir: Path) -> tuple[PreciseRun, list[int]]:
    """One run on a fresh fleet: warm up, measure, read the counters around the measurement.
    Returns the run and the PIDs it started (every one stopped by then)."""
    r = s.routing
    name = row_name(profile, direct)
    where = workdir / slug(name)
    gateway_rate, direct_rate = rates(s, direct)
    config = bench_config(s, gateway_rate)
    with ProcessGroup(where / "logs") as group:
        fleet = await start_event_fleet(group, r.fleet, where)
        async with CacheObserver(publishers(fleet.addresses, fleet.pub), TOPIC) as observer:
            gw = await start_gateway(group, profile, fleet, where, r.fleet.time_scale)
            traffic = None
            if direct:
                traffic = DirectTraffic(config, fleet.urls, direct_rate)
                traffic.start(horizon=r.duration + 600.0)
            try:
                print(f"  {name}: warm-up", file=sys.stderr, flush=True)
                target = Target(name, gw.url, cpu_pid=gw.pid)
                await run_benchmark(warmup_config(config, r.warmup), target)
                metrics = [f"{u}/metrics" for u in fleet.urls]
                before, cache_before = await scrape(metrics, SIM_FAMILIES), observer.history.counts()
                if traffic is not None:
                    traffic.measure_from_now()
                measured = dataclasses.replace(config, scrape_urls=tuple(metrics))
                sim_cpu, wall = cpu_seconds(fleet.process.pid, children=True), time.monotonic()
                result = await run_benchmark(measured, target)
                sim_cpu = cpu_seconds(fleet.process.pid, children=True) - sim_cpu
                wall = time.monotonic() - wall
                if traffic is not None:
                    traffic.measure_until_now()
                    await traffic.stop()
                await observer.settle()
                after, cache_after = await scrape(metrics, SIM_FAMILIES), observer.history.counts()
                kv = (await scrape([f"{gw.admin}/metrics"], KV_FAMILIES)
                      if profile == PRECISE else {})
                prefixes = observer.history.prefixes_per_replica()
            finally:
                if traffic is not None:
                    await traffic.stop()
        pids = [proc.pid for proc in group.started]
    row = RunRow.of(name, "poolgate", result, shown_commands(profile, r.fleet.time_scale))
    run = PreciseRun(
        row, profile, direct, server_hit_rate(before, after),
        after.get(SUCCESS, 0.0) - before.get(SUCCESS, 0.0), cache_after - cache_before,
        DirectSummary.of(traffic.measured()) if traffic is not None else None, kv,
        sim_cpu / wall if wall > 0 else None,
        approximate_index_bound(approximate_keys_per_group(config, r.warmup, row.requests),
                                prefixes))
    print(f"  {name}: {row.completed}/{row.requests} ok, TTFT p90 "
          f"{(row.ttft_p90 or 0) * 1000:.0f} ms, {row.output_throughput:.0f} tok/s, server hits "
          f"{(run.server_hit_rate or 0):.1%}, re-prefills {run.cache.roots_stored_again}",
          file=sys.stderr, flush=True)
    return run, pids


# -- the section -----------------------------------------------------------------------------

def combine(rounds: list[list[PreciseRun]]) -> list[PreciseRun]:
    """One run per name: median rows and figures over the rounds (counts as medians too)."""
    by_name: dict[str, list[PreciseRun]] = {}
    for runs in rounds:
        for run in runs:
            by_name.setdefault(run.row.name, []).append(run)
    out = []
    for found in by_name.values():
        first = found[0]
        if len(found) == 1:
            out.append(first)
            continue
        directs = [r.direct_summary for r in found if r.direct_summary is not None]
        out.append(PreciseRun(
            median_row([r.row for r in found]), first.profile, first.direct,
            _median([r.server_hit_rate for r in found]),
            statistics.median(r.served for r in found),
            CacheCounts(*(round(statistics.median(v)) for v in
                          zip(*(r.cache.as_tuple() for r in found), strict=True))),
            _median_direct(directs) if directs else None,
            first.kv_state, _median([r.sim_cpu_share for r in found]),
            _worst_bound([r.index_bound for r in found])))
    return out


def _worst_bound(bounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The index bound of the round with the most keys per replica (never_forgot of all)."""
    present = [b for b in bounds if b]
    if not present:
        return {}
    worst = max(present, key=lambda b: b.get("max_keys_per_replica", 0))
    return {**worst, "never_forgot": all(b.get("never_forgot") for b in present)}


def _median(values: list[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def _median_direct(found: list[DirectSummary]) -> DirectSummary:
    return DirectSummary(
        round(statistics.median(d.requests for d in found)),
        round(statistics.median(d.completed for d in found)),
        _median([d.ttft_p50 for d in found]), _median([d.ttft_p90 for d in found]),
        _median([d.hit_rate for d in found]))


def settings_dict(s: PreciseSettings) -> dict[str, Any]:
    r, f = s.routing, s.routing.fleet
    return {"replicas": f.replicas, "sim_profile": f.profile, "time_scale": f.time_scale,
            "kv_cache_blocks": f.kv_cache_blocks, "block_size": BLOCK_SIZE,
            "fleet_blocks": fleet_blocks(s), "prefix_blocks": prefix_blocks(s),
            "rate": r.rate, "duration": r.duration, "warmup": r.warmup, "groups": r.groups,
            "group_zipf": s.group_zipf, "prompts_per_group": r.prompts_per_group,
            "system_prompt_len": r.system_prompt_len, "question_len": r.question_len,
            "output_len": r.output_len, "direct_share": s.direct_share, "seed": r.seed,
            "api": "chat", "stream": True, "rounds": s.rounds, "profiles": list(s.profiles)}


def commands(s: PreciseSettings) -> list[str]:
    r = s.routing
    # Double quotes, so that the shell expands the port variables inside the JSON.
    events = kv_events_config("$KV_PORT", "$REPLAY_PORT").replace('"', '\\"')
    sim = (display(sim_argv(r.fleet, "$SIM_PORT", CONFIG_DIR / ENDPOINTS_FILE))
           + f' --kv-events-config "{events}"')
    out = [sim]
    for direct in (False, True) if s.direct_share > 0 else (False,):
        rate = rates(s, direct)[0]
        line = bench_command(bench_config(s, rate)).replace("--warmup 0", f"--warmup {r.warmup}")
        out.append(line + ("  # + direct traffic: the gateway's share" if direct else ""))
    out += [shown_commands(p, r.fleet.time_scale) for p in s.profiles]
    return out


def shown_profile(s: PreciseSettings) -> str:
    """precise-profile.yaml as the runs used it (ports as shell variables)."""
    replicas = [f"{HOST}:$((SIM_PORT+{i}))" for i in range(s.routing.fleet.replicas)]
    return yaml.safe_dump(precise_profile(replicas, "$KV_PORT", "$REPLAY_PORT"), sort_keys=False)


async def run(s: PreciseSettings, workdir: Path) -> Section:
    """Every case on a fresh fleet, `s.rounds` times interleaved; medians per row."""
    started = time.monotonic()
    rounds: list[list[PreciseRun]] = []
    notes: list[str] = []
    per_round: dict[str, list[dict[str, float | None]]] = {}
    for n in range(s.rounds):
        if s.rounds > 1:
            print(f"  round {n + 1} of {s.rounds}", file=sys.stderr, flush=True)
        runs = []
        for profile, direct in cases(s):
            try:
                measured, _ = await run_once(profile, direct, s, workdir / f"round-{n}")
                runs.append(measured)
            except BenchError as e:
                lines = str(e).strip().splitlines()
                note = f"{row_name(profile, direct)}: not measured: {lines[0] if lines else e}"
                if note not in notes:
                    notes.append(note)
        rounds.append(runs)
        for m in runs:
            per_round.setdefault(m.row.name, []).append(
                {"ttft_p90": m.row.ttft_p90, "output_throughput": m.row.output_throughput,
                 "server_hit_rate": m.server_hit_rate, "reprefill_share": m.reprefill_share})
    combined = combine(rounds)
    return Section(
        name="precise", created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=settings_dict(s),
        commands=commands(s), rows=[m.row for m in combined], notes=notes,
        extra={"runs": {m.row.name: m.to_dict() for m in combined}, "per_round": per_round,
               "profile_file": shown_profile(s)})

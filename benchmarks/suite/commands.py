"""Command lines of every process the suite starts: simulator, gateway and peer routers."""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from benchmarks.suite.manifests import POOL_LABEL_KEY, POOL_LABEL_VALUE

HOST = "127.0.0.1"


@dataclass(frozen=True, slots=True)
class SimSpec:
    """A simulated fleet: `poolgate sim` flags."""

    replicas: int
    profile: str
    model: str = "sim-llama"
    time_scale: float = 1.0
    kv_cache_blocks: int | None = None
    max_num_seqs: int | None = None
    seed: int = 0


def poolgate_argv(*args: str) -> list[str]:
    """`poolgate ARGS` run with this interpreter (so the suite uses the same installation)."""
    return [sys.executable, "-m", "poolgate", *args]


def sim_argv(spec: SimSpec, port: int | str, endpoints_file: Path) -> list[str]:
    """`poolgate sim` for `spec`, replica i on `port + i`, writing the pool's LocalEndpoints."""
    argv = poolgate_argv(
        "sim", "--replicas", str(spec.replicas), "--port", str(port), "--host", HOST,
        "--model", spec.model, "--profile", spec.profile, "--time-scale", f"{spec.time_scale:g}",
        "--seed", str(spec.seed),
    )
    if spec.kv_cache_blocks is not None:
        argv += ["--kv-cache-blocks", str(spec.kv_cache_blocks)]
    if spec.max_num_seqs is not None:
        argv += ["--max-num-seqs", str(spec.max_num_seqs)]
    return [*argv, "--endpoints-file", str(endpoints_file), "--endpoints-label", f"{POOL_LABEL_KEY}={POOL_LABEL_VALUE}"]


def serve_argv(config_dir: Path, port: int | str, admin_port: int | str,
               profile: str | None, extra: tuple[str, ...] = ()) -> list[str]:
    """`poolgate serve` on the suite's config; `profile` None leaves the scheduler flag out."""
    argv = poolgate_argv(
        "serve", "-f", str(config_dir), "--port", str(port), "--admin-port", str(admin_port),
        "--host", HOST, "--access-log", "off", "--no-watch", "--log-level", "warning", *extra,
    )
    return argv if profile is None else [*argv, "--scheduler-profile", profile]


# The gateway's defaults for how often it scrapes each endpoint and when metrics count as stale.
GATEWAY_SCRAPE_INTERVAL = 0.05
GATEWAY_METRICS_STALENESS = 2.0


def time_scaled_gateway_flags(time_scale: float) -> tuple[str, ...]:
    """Scrape flags that give the gateway, in simulated time, its default freshness.

    A fleet slowed down by `--time-scale X` changes X times slower, so scraping it every
    0.05 / X wall-clock seconds sees it exactly as the default 0.05 s sees a real-speed fleet;
    scraping faster would only spend the shared CPU on rendering /metrics pages."""
    if time_scale == 1.0:
        return ()
    return ("--scrape-interval", f"{GATEWAY_SCRAPE_INTERVAL / time_scale:g}",
            "--metrics-staleness", f"{GATEWAY_METRICS_STALENESS / time_scale:g}")


@dataclass(frozen=True, slots=True)
class Peer:
    """A peer router from PyPI, run from its own venv."""

    name: str  # the PyPI distribution and the console script
    policies: tuple[str, ...] = ("round_robin", "cache_aware")

    def executable(self, venv: Path) -> Path:
        return venv / "bin" / self.name

    def argv(self, venv: Path, port: int | str, metrics_port: int | str, workers: list[str],
             policy: str) -> list[str]:
        """The router in front of `workers` with `policy`; every other setting at its default."""
        exe = str(self.executable(venv))
        if self.name == "sglang-router":
            return [exe, "launch", "--host", HOST, "--port", str(port), "--worker-urls", *workers,
                    "--policy", policy, "--prometheus-host", HOST,
                    "--prometheus-port", str(metrics_port), "--log-level", "warn"]
        return [exe, "--host", HOST, "--port", str(port), "--worker-urls", *workers,
                "--policy", policy, "--prometheus-host", HOST,
                "--prometheus-port", str(metrics_port), "--log-level", "warning"]


PEERS = (Peer("vllm-router"), Peer("sglang-router"))


# How the report shows values that change per run: shell variables, so a command stays exact
# and can be pasted after setting them (replica i of the fleet listens on SIM_PORT + i).
SIM_PORT = "$SIM_PORT"
PORT = "$PORT"
ADMIN_PORT = "$ADMIN_PORT"
METRICS_PORT = "$METRICS_PORT"
CONFIG_DIR = Path("config")


def replica_urls_shown(replicas: int) -> list[str]:
    """The fleet's URLs as the report shows them."""
    return [f"http://{HOST}:$(({SIM_PORT[1:]}+{i}))" for i in range(replicas)]


_SHELL_SAFE = re.compile(r"[\w@%+=:,./$()-]+")


def display(argv: list[str], cwd: Path | None = None) -> str:
    """A command as a shell line, with this interpreter shown as `python` and paths under `cwd`
    made relative, so the report shows what a reader types."""
    shown: list[str] = []
    for i, arg in enumerate(argv):
        if i == 0 and arg == sys.executable:
            shown.append("python")
            continue
        if cwd is not None and arg.startswith(str(cwd) + "/"):
            arg = arg[len(str(cwd)) + 1 :]
        # Placeholders such as $PORT and $((SIM_PORT+1)) must stay unquoted to expand.
        shown.append(arg if _SHELL_SAFE.fullmatch(arg) else shlex.quote(arg))
    return " ".join(shown)

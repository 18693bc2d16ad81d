"""Starting the processes under test on 127.0.0.1 and always stopping them, by PID, at the end."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import aiohttp

from poolgate.bench.errors import BenchError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_range(n: int, attempts: int = 200) -> int:
    """The first of `n` consecutive free ports (the simulator binds PORT..PORT+n-1)."""
    for _ in range(attempts):
        base = free_port()
        if base + n > 65535:
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise BenchError(f"no {n} consecutive free ports found on 127.0.0.1")


@dataclass
class Managed:
    """A started process and its log file."""

    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit within `timeout`; idempotent."""
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=timeout)


@dataclass
class ProcessGroup:
    """Every process one experiment starts; leaving the `with` block stops them all by PID,
    newest first (routers before the fleet behind them), pass, fail or Ctrl-C."""

    log_dir: Path
    started: list[Managed] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Managed:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})},
            )
        managed = Managed(name, list(argv), proc, log_path)
        self.started.append(managed)
        return managed

    def stop_all(self) -> None:
        while self.started:
            self.started.pop().stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()


async def wait_ready(urls: Sequence[str], proc: Managed, timeout: float = 60.0,
                     expect: int = 200) -> None:
    """Poll every URL until each answers `expect`; fail early with the log if `proc` exits."""
    deadline = time.monotonic() + timeout
    pending = list(urls)
    last: object = None
    async with aiohttp.ClientSession() as session:
        while pending:
            if proc.proc.poll() is not None:
                raise BenchError(f"{proc.name} exited with status {proc.proc.returncode} before "
                                 f"it was ready:\n{proc.log_tail()}")
            if time.monotonic() > deadline:
                raise BenchError(f"{proc.name} not ready after {timeout:.0f}s ({pending[0]}: "
                                 f"{last!r}):\n{proc.log_tail()}")
            url = pending[0]
            try:
                async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp:
                    last = resp.status
                    if resp.status == expect:
                        pending.pop(0)
                        continue
            except (aiohttp.ClientError, TimeoutError, OSError) as e:
                last = e
            await asyncio.sleep(0.1)


async def wait_file(path: Path, proc: Managed, timeout: float = 30.0) -> None:
    """Wait until `proc` has written `path` (the simulator writes its endpoints file last)."""
    deadline = time.monotonic() + timeout
    # A stat of a local file is microseconds; not worth a thread per poll.
    while not os.path.exists(path):  # noqa: ASYNC240
        if proc.proc.poll() is not None:
            raise BenchError(f"{proc.name} exited with status {proc.proc.returncode}:\n"
                             f"{proc.log_tail()}")
        if time.monotonic() > deadline:
            raise BenchError(f"{proc.name} did not write {path} within {timeout:.0f}s:\n"
                             f"{proc.log_tail()}")
        await asyncio.sleep(0.05)

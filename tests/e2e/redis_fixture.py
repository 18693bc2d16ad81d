"""A real `redis-server` on a free loopback port, for the shared-state tests.

Import the fixture into a test module (`from tests.e2e.redis_fixture import redis_server`).
A missing redis-server fails the test with a clear message rather than skipping it: CI installs
it (`make os-deps`), and a silently skipped global-limit test would prove nothing.
"""

from __future__ import annotations

import shutil
import socket
import time
from dataclasses import dataclass

import pytest

from tests.support.processes import ProcessGroup, ServerProcess, free_port


@dataclass(frozen=True)
class RedisServer:
    """A running redis-server: where it listens and its process."""

    port: int
    process: ServerProcess

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(procs: ProcessGroup, timeout: float = 10.0,
                port: int | None = None) -> RedisServer:
    """Start redis-server without persistence on `port` (default: a free one) and wait until it
    answers PING. Starting it again on the port of one that was stopped is a Redis restart."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (needed for the shared-limit tests): "
                    "run `make os-deps` or `apt-get install redis-server`", pytrace=False)
    port = free_port() if port is None else port
    proc = procs.start([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                        "--appendonly", "no"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.proc.poll() is not None:
            pytest.fail(f"redis-server exited with {proc.proc.returncode}:\n{proc.output()}")
        if _pong(port):
            return RedisServer(port, proc)
        time.sleep(0.05)
    pytest.fail(f"redis-server on port {port} did not answer PING within {timeout}s")


@pytest.fixture
def redis_server(procs: ProcessGroup) -> RedisServer:
    """A fresh redis-server for one test, stopped by PID at teardown with the other processes."""
    return start_redis(procs)

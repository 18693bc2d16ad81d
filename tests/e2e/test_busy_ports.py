"""A port another process holds: every long-running command says which address, that it is in
use, and which flag (or variable) picks another port, then exits 1 (issue 16, item 6d)."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.processes import free_port, poolgate_command

pytestmark = pytest.mark.e2e

DEMO_MANIFESTS = Path(__file__).resolve().parents[2] / "src" / "poolgate" / "demo" / "manifests.yaml"


@pytest.fixture
def busy() -> Iterator[int]:
    """A loopback port with a listener on it for the test's duration."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield int(s.getsockname()[1])


CASES = {
    "serve --port": (["serve", "-f", str(DEMO_MANIFESTS), "--host", "127.0.0.1",
                      "--port", "{busy}", "--admin-port", "{free}", "--no-watch"], "--port"),
    "serve --admin-port": (["serve", "-f", str(DEMO_MANIFESTS), "--host", "127.0.0.1",
                            "--port", "{free}", "--admin-port", "{busy}", "--no-watch"],
                           "--admin-port"),
    "epp --grpc-port": (["epp", "-f", str(DEMO_MANIFESTS), "--host", "127.0.0.1",
                         "--grpc-port", "{busy}", "--admin-port", "{free}", "--no-watch"],
                        "--grpc-port"),
    "epp --admin-port": (["epp", "-f", str(DEMO_MANIFESTS), "--host", "127.0.0.1",
                          "--grpc-port", "{free}", "--admin-port", "{busy}", "--no-watch"],
                         "--admin-port"),
    "demo --port": (["demo", "--port", "{busy}", "--admin-port", "{free}", "--replicas", "1"],
                    "--port"),
    "demo --admin-port": (["demo", "--port", "{free}", "--admin-port", "{busy}",
                           "--replicas", "1"], "--admin-port"),
    "sim --port": (["sim", "--host", "127.0.0.1", "--port", "{busy}"], "--port"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_busy_port_names_the_flag_that_moves_it(case: str, busy: int) -> None:
    args, flag = CASES[case]
    argv = [a.format(busy=busy, free=free_port()) for a in args]
    done = subprocess.run(poolgate_command(*argv), capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    line = done.stderr.strip().splitlines()[-1]
    assert f"127.0.0.1:{busy}" in line, line
    assert "already in use" in line, line
    assert line.rstrip(")").endswith(f"choose another port with {flag}"), line


def test_the_router_names_its_port_variable(busy: int) -> None:
    env = {**os.environ, "MODEL_REF": "m", "HOST": "127.0.0.1", "PORT": str(busy)}
    done = subprocess.run(poolgate_command("router"), capture_output=True, text=True, timeout=60,
                          env=env)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"poolgate router: cannot listen on 127.0.0.1:{busy}: the address is already in use; "
        "choose another port with PORT")

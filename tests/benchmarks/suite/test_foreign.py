"""Other work's share of the CPU while a section ran."""

from __future__ import annotations

import pytest

from benchmarks.suite.foreign import CpuSnapshot, busy_seconds, foreign_share

STAT = """cpu  100 20 30 1000 50 5 5 10 0 0
cpu0 50 10 15 500 25 2 2 5 0 0
intr 1 2 3
"""


def test_busy_seconds_counts_user_nice_system_irq_softirq_steal() -> None:
    # 100 + 20 + 30 + 5 + 5 + 10 = 170 ticks; idle (1000) and iowait (50) are not busy
    assert busy_seconds(STAT, 100) == pytest.approx(1.70)


def test_busy_seconds_needs_the_aggregate_line() -> None:
    with pytest.raises(ValueError, match="no aggregate cpu line"):
        busy_seconds("cpu0 1 2 3\n", 100)


def test_foreign_share_subtracts_own_time() -> None:
    before = CpuSnapshot(machine_busy=100.0, own=10.0, wall=0.0)
    after = CpuSnapshot(machine_busy=115.0, own=20.0, wall=10.0)
    # 15 s busy, 10 s ours -> 5 s foreign over 10 s x 2 cores
    assert foreign_share(before, after, cores=2) == pytest.approx(0.25)


def test_foreign_share_is_clamped_and_undefined_without_time() -> None:
    before = CpuSnapshot(100.0, 10.0, 0.0)
    assert foreign_share(before, CpuSnapshot(100.5, 12.0, 1.0), 2) == 0.0
    assert foreign_share(before, CpuSnapshot(150.0, 10.0, 1.0), 2) == 1.0
    assert foreign_share(before, CpuSnapshot(101.0, 10.0, 0.0), 2) is None


def test_snapshot_of_this_machine() -> None:
    a = CpuSnapshot.take()
    b = CpuSnapshot.take()
    assert b.wall >= a.wall and b.machine_busy >= a.machine_busy and b.own >= a.own

"""How much CPU other work on the machine used while a section ran.

Everything the suite starts is its child and is reaped before a section ends, so the machine's
busy time (`/proc/stat`) minus this process's own and reaped children's time (`os.times()`) is
what the rest of the machine used: the share of the cores the benchmark did not have.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

# /proc/stat `cpu` columns that count as busy: user nice system irq softirq steal.
_BUSY_COLUMNS = (0, 1, 2, 5, 6, 7)


def busy_seconds(proc_stat: str, ticks_per_second: float) -> float:
    """Busy CPU seconds of all cores since boot, from the text of /proc/stat."""
    for line in proc_stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            values = [int(v) for v in fields[1:]]
            return sum(values[i] for i in _BUSY_COLUMNS if i < len(values)) / ticks_per_second
    raise ValueError("no aggregate cpu line in /proc/stat")


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """Machine busy time, this process tree's time and the wall clock at one moment."""

    machine_busy: float
    own: float
    wall: float

    @classmethod
    def take(cls) -> CpuSnapshot:
        t = os.times()
        own = t.user + t.system + t.children_user + t.children_system
        busy = busy_seconds(Path("/proc/stat").read_text(), os.sysconf("SC_CLK_TCK"))
        return cls(busy, own, time.monotonic())


def foreign_share(before: CpuSnapshot, after: CpuSnapshot, cores: int) -> float | None:
    """Share of the machine's cores (0..1) used by processes outside the suite in between."""
    wall = after.wall - before.wall
    if wall <= 0 or cores <= 0:
        return None
    foreign = (after.machine_busy - before.machine_busy) - (after.own - before.own)
    return max(0.0, min(1.0, foreign / (wall * cores)))

"""CPU time of a target process (and optionally its descendants) from /proc, for µs per request."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolgate.bench.errors import BenchError


@dataclass(frozen=True, slots=True)
class ProcStat:
    """The fields of /proc/PID/stat we need; times in clock ticks."""

    pid: int
    ppid: int
    utime: int
    stime: int
    cutime: int  # reaped children only
    cstime: int


def parse_proc_stat(text: str) -> ProcStat:
    """Parse one /proc/PID/stat line (the command name may contain spaces and parentheses)."""
    pid_s, _, _ = text.partition(" (")
    rest = text[text.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); utime..cstime are fields 14..17.
    return ProcStat(
        pid=int(pid_s),
        ppid=int(rest[1]),
        utime=int(rest[11]),
        stime=int(rest[12]),
        cutime=int(rest[13]),
        cstime=int(rest[14]),
    )


def _read_stat(pid: int, proc: Path) -> ProcStat | None:
    try:
        return parse_proc_stat((proc / str(pid) / "stat").read_text())
    except (OSError, ValueError, IndexError):
        return None


def live_stats(proc: Path = Path("/proc")) -> list[ProcStat]:
    """The stat of every process alive now (those that vanish while being read are left out)."""
    return [st for p in proc.iterdir() if p.name.isdigit()
            if (st := _read_stat(int(p.name), proc)) is not None]


def descendants(pid: int, stats: list[ProcStat]) -> list[ProcStat]:
    """Every live process below `pid` in the process tree (children, grandchildren, ...)."""
    by_parent: dict[int, list[ProcStat]] = {}
    for st in stats:
        by_parent.setdefault(st.ppid, []).append(st)
    out: list[ProcStat] = []
    todo = [pid]
    while todo:
        for child in by_parent.get(todo.pop(), []):
            out.append(child)
            todo.append(child.pid)
    return out


def cpu_seconds(pid: int, *, children: bool = False, proc: Path = Path("/proc")) -> float:
    """User + system CPU seconds used so far by `pid`.

    With `children`, adds the live descendants and the children `pid` has already reaped.
    """
    root = _read_stat(pid, proc)
    if root is None:
        raise BenchError(f"--cpu-pid {pid}: no such process (or /proc is not readable)")
    ticks = root.utime + root.stime
    if children:
        ticks += root.cutime + root.cstime
        ticks += sum(st.utime + st.stime for st in descendants(pid, live_stats(proc)))
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class CpuUsage:
    """CPU a target process used during the measured phase."""

    pid: int
    children: bool
    cpu_seconds: float
    requests: int

    @property
    def us_per_request(self) -> float | None:
        return self.cpu_seconds * 1e6 / self.requests if self.requests else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "children": self.children,
            "cpu_seconds": self.cpu_seconds,
            "requests": self.requests,
            "us_per_request": self.us_per_request,
        }

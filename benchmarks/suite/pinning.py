"""CPU pinning for the overhead runs that give the front (gateway or peer router) a core of its own.

On a 2-core machine the client and the simulator alone keep both cores busy at 64 requests in
flight, so any front added in between mostly adds time spent waiting for a CPU. Pinned runs put
the client and the simulator on one CPU and the front on the other, as a gateway deployed on its
own cores would be, so the added latency is the front's own work and queueing. Linux only
(`sched_setaffinity`); every thread of a process and of its descendants is pinned, and the
previous affinities are restored afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from poolgate.bench.cpu import descendants, live_stats

PROC = Path("/proc")
# Load side (client + simulator) and the front.
LOAD_CPU_INDEX = 0
FRONT_CPU_INDEX = 1


def usable_cpus() -> list[int]:
    """The CPUs this process may run on, in order; empty where affinity is not supported."""
    getter = getattr(os, "sched_getaffinity", None)
    return sorted(getter(0)) if getter is not None else []


def can_pin() -> bool:
    """Whether pinned runs are possible here: Linux affinity and at least two usable CPUs."""
    return hasattr(os, "sched_setaffinity") and len(usable_cpus()) >= 2


def process_tree(pid: int, proc: Path = PROC) -> list[int]:
    """`pid` and its live descendants."""
    return [pid, *(st.pid for st in descendants(pid, live_stats(proc)))]


def threads(pid: int, proc: Path = PROC) -> list[int]:
    """The thread ids of `pid` (just `pid` when its task list cannot be read)."""
    try:
        return sorted(int(t.name) for t in (proc / str(pid) / "task").iterdir())
    except OSError:
        return [pid]


def _set(tid: int, cpus: set[int]) -> set[int] | None:
    """Pin one thread; its previous affinity, or None when it is gone."""
    try:
        before = os.sched_getaffinity(tid)
        os.sched_setaffinity(tid, cpus)
    except (ProcessLookupError, PermissionError):
        return None
    return before


@contextlib.contextmanager
def pinned(layout: Sequence[tuple[int, set[int]]]) -> Iterator[None]:
    """Pin each process tree (root pid, CPUs) for the duration of the block, then restore."""
    saved: list[tuple[int, set[int]]] = []
    try:
        for pid, cpus in layout:
            for member in process_tree(pid):
                for tid in threads(member):
                    before = _set(tid, cpus)
                    if before is not None:
                        saved.append((tid, before))
        yield
    finally:
        for tid, before in reversed(saved):
            _set(tid, before)

from __future__ import annotations

import os
from pathlib import Path

import pytest

from poolgate.bench.cpu import CpuUsage, ProcStat, cpu_seconds, descendants, parse_proc_stat
from poolgate.bench.errors import BenchError


def stat_line(pid: int, ppid: int, utime: int, stime: int, cutime: int = 0, cstime: int = 0,
              comm: str = "python") -> str:
    # Fields 3..13 then utime stime cutime cstime and the rest.
    middle = " ".join(["S", str(ppid)] + ["0"] * 9)
    return f"{pid} ({comm}) {middle} {utime} {stime} {cutime} {cstime} 20 0 1 0 100\n"


def test_parse_proc_stat_handles_spaces_and_parens_in_the_name() -> None:
    st = parse_proc_stat(stat_line(12, 1, 300, 40, 5, 6, comm="my (odd) proc"))
    assert st == ProcStat(pid=12, ppid=1, utime=300, stime=40, cutime=5, cstime=6)


def test_parse_proc_stat_of_this_process() -> None:
    st = parse_proc_stat(Path(f"/proc/{os.getpid()}/stat").read_text())
    assert st.pid == os.getpid() and st.ppid == os.getppid()


def fake_proc(tmp_path: Path, lines: dict[int, str]) -> Path:
    for pid, line in lines.items():
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(line)
    (tmp_path / "self").mkdir()
    return tmp_path


def test_cpu_seconds_with_and_without_descendants(tmp_path: Path) -> None:
    tick = os.sysconf("SC_CLK_TCK")
    proc = fake_proc(tmp_path, {
        10: stat_line(10, 1, 100, 50, cutime=7, cstime=3),
        11: stat_line(11, 10, 20, 0),
        12: stat_line(12, 11, 5, 5),
        13: stat_line(13, 1, 999, 999),
    })
    assert cpu_seconds(10, proc=proc) == pytest.approx(150 / tick)
    assert cpu_seconds(10, children=True, proc=proc) == pytest.approx((150 + 10 + 20 + 10) / tick)


def test_descendants_walks_the_tree() -> None:
    stats = [ProcStat(2, 1, 0, 0, 0, 0), ProcStat(3, 2, 0, 0, 0, 0), ProcStat(4, 1, 0, 0, 0, 0)]
    assert sorted(s.pid for s in descendants(1, stats)) == [2, 3, 4]
    assert [s.pid for s in descendants(2, stats)] == [3]


def test_missing_process_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(BenchError, match="--cpu-pid 99: no such process"):
        cpu_seconds(99, proc=tmp_path)


def test_cpu_usage_per_request() -> None:
    assert CpuUsage(1, False, 0.5, 1000).us_per_request == pytest.approx(500.0)
    assert CpuUsage(1, False, 0.5, 0).us_per_request is None

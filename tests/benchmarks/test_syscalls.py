"""Reading `strace -c` summaries (benchmarks/syscalls.py)."""

from __future__ import annotations

from benchmarks.syscalls import parse_strace_summary

# strace 6.1's `-c -f` summary of `ls /`, cut down; the errors column is empty on most lines.
SUMMARY = """\
% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 31.77    0.000176           5        34        13 openat
 25.45    0.000141           6        23           close
  0.54    0.000003           1         2         2 ioctl
  0.00    0.000000           0         7           read
------ ----------- ----------- --------- --------- ----------------
100.00    0.000554           3        66        15 total
"""


def test_calls_per_system_call_without_the_total() -> None:
    assert parse_strace_summary(SUMMARY) == {"openat": 34, "close": 23, "ioctl": 2, "read": 7}


def test_nothing_traced_is_no_calls() -> None:
    assert parse_strace_summary("") == {}

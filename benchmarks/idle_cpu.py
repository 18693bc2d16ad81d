"""CPU of an idle `poolgate demo` (issue 16, item 5): the gateway and its simulated fleet with no
request to serve, read from /proc (utime + stime of the process tree) over a window.

    .venv/bin/python -m benchmarks.idle_cpu --seconds 60

starts `.venv/bin/poolgate demo` on free ports, waits until it answers and then `--settle`
seconds more (the scraper backs off after a few seconds without requests), reads the CPU time of
the demo process and its descendants at the start and the end of the window, prints the share
of one core, and stops the demo with SIGTERM. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _stat(pid: int) -> list[str]:
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may hold spaces: split after its closing parenthesis.
    return text[text.rindex(")") + 2:].split()


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        for task in Path(f"/proc/{current}/task").iterdir():
            children = (task / "children").read_text().split()
            todo.extend(int(c) for c in children)
    return out


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and every live descendant, plus the children it already reaped."""
    total = 0
    for member in _descendants(pid):
        try:
            fields = _stat(member)
        except FileNotFoundError:
            continue  # ended between the listing and the read
        # Fields 14-17 of proc(5) (utime, stime, cutime, cstime); index 0 here is field 3.
        total += int(fields[11]) + int(fields[12])
        if member == pid:
            total += int(fields[13]) + int(fields[14])
    return total / _TICKS


def _wait_ready(url: str, deadline: float) -> None:
    while True:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def measure(poolgate: str, seconds: float, settle: float) -> tuple[float, float]:
    """Start the demo, let it settle, return (CPU seconds used, wall seconds) over the window."""
    port, admin = _free_port(), _free_port()
    proc = subprocess.Popen(
        [poolgate, "demo", "--port", str(port), "--admin-port", str(admin),
         "--access-log", "off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_ready(f"http://127.0.0.1:{admin}/healthz", time.monotonic() + 60)
        time.sleep(settle)
        cpu0, wall0 = tree_cpu_seconds(proc.pid), time.monotonic()
        time.sleep(seconds)
        cpu1, wall1 = tree_cpu_seconds(proc.pid), time.monotonic()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return cpu1 - cpu0, wall1 - wall0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="measuring window")
    parser.add_argument("--settle", type=float, default=10.0,
                        help="idle seconds before the window starts")
    parser.add_argument("--poolgate", default=str(Path(sys.executable).with_name("poolgate")),
                        help="the poolgate command to run (default: the one next to this Python)")
    args = parser.parse_args(argv)
    cpu, wall = measure(args.poolgate, args.seconds, args.settle)
    print(f"idle poolgate demo: {cpu:.2f} s CPU in {wall:.1f} s = {100 * cpu / wall:.1f}% "
          "of one core (gateway + 4 simulated replicas)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

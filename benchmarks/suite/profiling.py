"""Where a request's CPU goes in `poolgate serve` at saturation (issue 18): py-spy samples of the
gateway while `wrk` saturates it on the instant backends, folded into the stages of the request
path and into the frames that spend the most time themselves.

py-spy (`--native`) samples the gateway's Python stack and the C frames under it (uvloop,
httptools, libc, the interpreter) a fixed number of times a second while the thread is on a
CPU; idle waits (epoll with nothing ready) are not sampled. A sample's stage is the innermost
frame on its stack that a rule below names (a socket write inside the relay counts to the relay;
garbage collection counts to itself wherever it was triggered); shares of samples times the CPU
per request measured without the profiler give microseconds per request per stage. Time in the
kernel (system calls: socket reads and writes, epoll) is included, in the stage whose code made
the call: py-spy sees the libc wrapper (`write`, `read`, `epoll_wait`) at the top of the stack.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolgate.bench import BenchError
from poolgate.bench.cpu import parse_proc_stat

# A stage, the file its marker functions live in (a path suffix), and the functions (exact
# names, or prefixes ending in "*"); the first rule that matches a frame, walking from the
# leaf to the root, names the sample's stage.
Rule = tuple[str, str, tuple[str, ...]]

PARSE = "downstream: read and parse the request (httptools)"
RESOLVE = "resolve: route, backendRef, upstream headers"
INSPECT = "inspect: body JSON, model, objective, request for the picker"
ADMIT = "admit: shedding, rate limit"
PICK = "pick: the scheduler (filters, scorers, picker, prefix index)"
UPSTREAM_WRITE = "upstream: connection, request head, write"
UPSTREAM_READ = "upstream: read and parse the response (httptools)"
RELAY = "relay: response head and body to the client"
OUTCOME = "outcome: lease release, metrics, live window"
ATTEMPT = "attempt: circuit breaker, lease, retry bookkeeping"
HANDLE = "request: context, error handling (Gateway.handle)"
TASK = "request task: start, keep-alive (server)"
BACKGROUND = "background: metrics scraping, health"
GC = "garbage collection"
READS = "socket reads: read() by uvloop before data_received, both sides"
LOOP = "event loop: epoll, callbacks, task switching (uvloop)"
OTHER = "other"

STAGES = (PARSE, RESOLVE, INSPECT, ADMIT, PICK, UPSTREAM_WRITE, UPSTREAM_READ, RELAY, OUTCOME,
          ATTEMPT, HANDLE, TASK, BACKGROUND, GC, READS, LOOP, OTHER)

RULES: tuple[Rule, ...] = (
    (PARSE, "poolgate/http/server.py", ("_Connection.data_received", "_Connection.on_*",
                                        "_Connection._enqueue", "_Connection.connection_made",
                                        "_Connection.eof_received", "DownstreamRequest.__init__")),
    (UPSTREAM_READ, "poolgate/http/client.py", ("UpstreamConnection.data_received",
                                                "UpstreamConnection.on_*",
                                                "UpstreamResponse._feed",
                                                "UpstreamResponse._finish",
                                                "UpstreamResponse._wake")),
    (RESOLVE, "poolgate/proxy/gateway.py", ("Gateway.resolve",)),
    (INSPECT, "poolgate/proxy/gateway.py", ("Gateway.inspect", "Gateway._resolve_inference",
                                            "Gateway.authenticate")),
    (ADMIT, "poolgate/proxy/gateway.py", ("Gateway.admit", "Gateway.shed")),
    (PICK, "poolgate/proxy/gateway.py", ("Gateway.pick",)),
    (UPSTREAM_WRITE, "poolgate/proxy/gateway.py", ("Gateway._send",)),
    (RELAY, "poolgate/proxy/gateway.py", ("Gateway._relay",)),
    (OUTCOME, "poolgate/proxy/gateway.py", ("Gateway.finish", "Gateway._record_live")),
    (OUTCOME, "poolgate/proxy/lease.py", ("RequestLease.close", "RequestLease.end_attempt",
                                          "RequestLease.relayed")),
    (ATTEMPT, "poolgate/proxy/gateway.py", ("Gateway.attempt",)),
    (HANDLE, "poolgate/proxy/gateway.py", ("Gateway.handle",)),
    (TASK, "poolgate/http/server.py", ("_Connection._run", "_Connection._after")),
    (BACKGROUND, "poolgate/datalayer/", ("*",)),
)
GC_FUNCTIONS = frozenset({"gc_collect_main", "gc_collect_with_callback", "gc_collect_generations",
                          "collect"})
# A thread waiting for work (the gateway's thread pool, idle): py-spy's native mode samples it
# as if it ran, so such samples are set apart, not counted as CPU.
IDLE_FUNCTIONS = frozenset({"_queue_SimpleQueue_get", "Condition.wait", "Event.wait",
                            "Thread._wait_for_tstate_lock", "Thread.join", "pthread_cond_wait",
                            "pthread_cond_timedwait", "sem_wait", "sem_timedwait"})
LOOP_FUNCTIONS = frozenset({"Runner.run", "run_forever", "run_until_complete", "uv_run"})
SYSCALLS = frozenset({"write", "writev", "send", "sendto", "sendmsg", "read", "readv", "recv",
                      "recvfrom", "recvmsg", "epoll_wait", "epoll_pwait", "epoll_ctl", "accept4",
                      "close", "shutdown", "getsockopt", "setsockopt", "getpeername",
                      "getsockname", "clock_gettime", "__libc_write", "__libc_read",
                      "__libc_recv", "__libc_send"})

READ_CALLS = frozenset({"read", "readv", "recv", "recvfrom", "recvmsg", "__libc_read",
                        "__libc_recv"})

_FRAME = re.compile(r"^(?P<name>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")
_HEX = re.compile(r"^0x[0-9a-f]+$")


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame of a py-spy stack: its function and the file (or shared object) it is in."""

    name: str
    file: str

    @property
    def label(self) -> str:
        return f"{self.name} ({self.file})"

    @property
    def is_syscall(self) -> bool:
        return self.file.startswith("libc") and self.name in SYSCALLS


def parse_frame(text: str, compiled: Mapping[str, str] | None = None) -> Frame:
    """`Gateway.pick (poolgate/proxy/gateway.py:391)` -> Frame("Gateway.pick", "poolgate/...");
    an unresolved native address is folded into one frame per object file; a C function mypyc
    compiled from one of `compiled`'s modules (see `mypyc_prefixes`) becomes the Python
    function it was compiled from, in `FILE, compiled`."""
    m = _FRAME.match(text.strip())
    if m is None:
        return Frame(text.strip() or "?", "?")
    name, file = m.group("name"), m.group("file")
    if _HEX.match(name):
        name = "(unresolved)"
    elif compiled and file.startswith(_MYPYC_SOURCE):
        found = compiled_function(name, compiled)
        if found is not None:
            return Frame(found[0], f"{found[1]}, compiled")
    return Frame(name, file)


def parse_raw(text: str, compiled: Iterable[str] = ()) -> list[tuple[tuple[Frame, ...], int]]:
    """py-spy's `--format raw` (collapsed stacks: `root;...;leaf COUNT` per line); `compiled`:
    the modules mypyc compiled (dotted names), whose C frames are read as their Python ones."""
    prefixes = mypyc_prefixes(compiled)
    out: list[tuple[tuple[Frame, ...], int]] = []
    for line in text.splitlines():
        stack, _, count = line.rstrip().rpartition(" ")
        if not stack or not count.isdigit():
            continue
        out.append((tuple(parse_frame(f, prefixes) for f in stack.split(";")), int(count)))
    return out


# mypyc writes one C file per build (`__native_<hash>.c`), and names each function after its
# module (the shortest dotted suffix that tells the build's modules apart, dots as `___`), then
# `___` and the class and method, the function, or an async function's generator class
# (`<function>_<Class>_gen`, with its own methods after it).
_MYPYC_SOURCE = "__native_"
_MYPYC_WRAPPERS = ("CPyDef_", "CPyPy_", "CPyDunder_am_send", "CPyDunder_")
_GENERATOR = re.compile(r"^(?P<func>.+?)_(?:(?P<cls>_?[A-Z][A-Za-z0-9]*)_)?gen(?:_.*)?$")
_METHOD = re.compile(r"^(?P<cls>_?[A-Z][A-Za-z0-9]*)___(?P<meth>.+)$")
_TYPE_SLOT = re.compile(r"^(?P<cls>_?[A-Z][A-Za-z0-9]*)_(?:dealloc|traverse|clear|setup)$")


def mypyc_prefixes(modules: Iterable[str]) -> dict[str, str]:
    """mypyc's name of each module in a build (`gateway`, `observability___inference`) -> its
    file (`poolgate/proxy/gateway.py`)."""
    names = list(modules)
    out: dict[str, str] = {}
    for name in names:
        parts = name.split(".")
        for n in range(1, len(parts) + 1):
            suffix = parts[-n:]
            if sum(1 for other in names if other.split(".")[-n:] == suffix) == 1:
                out["___".join(suffix)] = name.replace(".", "/") + ".py"
                break
    return out


def compiled_function(symbol: str, prefixes: Mapping[str, str]) -> tuple[str, str] | None:
    """The Python function (`Gateway.attempt`) and file a mypyc C function was compiled from
    (`CPyDef_gateway___attempt_Gateway_gen_____mypyc_generator_helper__`), or None."""
    for wrapper in _MYPYC_WRAPPERS:
        if symbol.startswith(wrapper):
            symbol = symbol[len(wrapper):]
            break
    for prefix in sorted(prefixes, key=len, reverse=True):
        if symbol.startswith(prefix + "___"):
            return _python_name(symbol[len(prefix) + 3:]), prefixes[prefix]
    return None


def _python_name(rest: str) -> str:
    for pattern in (_GENERATOR, _TYPE_SLOT):
        m = pattern.match(rest)
        if m is not None:
            cls, func = m.group("cls"), m.groupdict().get("func")
            if func is None:
                return str(cls)
            return f"{cls}.{func}" if cls else str(func)
    m = _METHOD.match(rest)
    if m is not None:
        return f"{m.group('cls')}.{m.group('meth')}"
    return rest


def _matches(frame: Frame, rule: Rule) -> bool:
    _, path, names = rule
    if path not in frame.file:
        return False
    for n in names:
        if n == "*" or frame.name == n or (n.endswith("*") and frame.name.startswith(n[:-1])):
            return True
    return False


def is_idle(stack: Sequence[Frame]) -> bool:
    """Whether a sample is of a thread waiting for work (see `IDLE_FUNCTIONS`)."""
    return any(f.name in IDLE_FUNCTIONS for f in stack)


def stage_of(stack: Sequence[Frame]) -> str:
    """The stage a sample counts to (see the module's docstring)."""
    if any(f.name in GC_FUNCTIONS and "python" in f.file for f in stack):
        return GC
    for frame in reversed(stack):
        for rule in RULES:
            if _matches(frame, rule):
                return rule[0]
    if any(f.name in LOOP_FUNCTIONS for f in stack):
        leaf = stack[-1]
        return READS if leaf.is_syscall and leaf.name in READ_CALLS else LOOP
    return OTHER


@dataclass
class Profile:
    """Samples folded by stage and by frame."""

    samples: int = 0
    idle: int = 0  # samples of threads waiting for work, left out of everything else
    stages: Counter[str] = field(default_factory=Counter)
    stage_syscalls: Counter[str] = field(default_factory=Counter)
    self_samples: Counter[str] = field(default_factory=Counter)
    total_samples: Counter[str] = field(default_factory=Counter)
    syscall_labels: set[str] = field(default_factory=set)

    def add(self, stacks: Iterable[tuple[tuple[Frame, ...], int]]) -> None:
        for stack, n in stacks:
            if not stack:
                continue
            if is_idle(stack):
                self.idle += n
                continue
            stage = stage_of(stack)
            self.samples += n
            self.stages[stage] += n
            if stack[-1].is_syscall:
                self.stage_syscalls[stage] += n
                self.syscall_labels.add(stack[-1].label)
            self.self_samples[stack[-1].label] += n
            for label in {f.label for f in stack}:
                self.total_samples[label] += n

    def to_dict(self, top: int = 25) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "idle_samples": self.idle,
            "stages": [{"stage": s, "samples": self.stages[s],
                        "syscall_samples": self.stage_syscalls[s]}
                       for s in STAGES if self.stages[s]],
            "top": [{"frame": label, "self": n, "total": self.total_samples[label],
                     "syscall": label in self.syscall_labels}
                    for label, n in self.self_samples.most_common(top)],
        }


def pyspy_binary() -> str:
    """py-spy next to this interpreter (`pip install py-spy`; the bench extra), else on PATH."""
    beside = Path(sys.executable).parent / "py-spy"
    if beside.exists():
        return str(beside)
    found = shutil.which("py-spy")
    if found is None:
        raise BenchError("py-spy is not installed: `pip install 'py-spy>=0.4'` into the suite's "
                         "venv (the bench extra has it)")
    return found


def record_argv(pid: int | str, seconds: float, rate: int, output: Path | str,
                binary: str = "py-spy", native: bool = True) -> list[str]:
    """py-spy sampling `pid` for `seconds`, collapsed stacks to `output`: with the C frames
    (`--native`, which stops the process for each sample), or the Python frames only, read
    without stopping it (`--nonblocking`)."""
    return [binary, "record", "--pid", str(pid), "--duration", str(max(1, round(seconds))),
            "--rate", str(rate), "--native" if native else "--nonblocking", "--format", "raw",
            "--output", str(output)]


async def record(pid: int, seconds: float, rate: int, output: Path, native: bool = True) -> str:
    """Run py-spy to the end; the collapsed stacks it wrote."""
    proc = await asyncio.create_subprocess_exec(
        *record_argv(pid, seconds, rate, output, pyspy_binary(), native),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=seconds + 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return _written(output, proc.returncode, out)


def _written(output: Path, status: int | None, log: bytes) -> str:
    """What py-spy wrote to `output`; BenchError with its log when it failed."""
    if status != 0 or not output.exists():
        raise BenchError(f"py-spy failed (status {status}): "
                         f"{log.decode(errors='replace').strip()[-1000:]}")
    return output.read_text()


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """User and system CPU seconds of one process at one moment (from /proc/PID/stat)."""

    user: float
    system: float

    @classmethod
    def of(cls, pid: int, proc: Path = Path("/proc")) -> CpuTimes:
        try:
            st = parse_proc_stat((proc / str(pid) / "stat").read_text())
        except (OSError, ValueError, IndexError) as e:
            raise BenchError(f"cannot read the CPU time of process {pid}: {e}") from None
        tick = os.sysconf("SC_CLK_TCK")
        return cls(st.utime / tick, st.stime / tick)

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user - other.user, self.system - other.system)

    def __add__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.user + other.user, self.system + other.system)


def _split(profile: Mapping[str, Any]) -> tuple[int, int]:
    """Samples in user space and samples in system calls, over the whole profile."""
    syscalls = sum(s["syscall_samples"] for s in profile.get("stages", []))
    return (profile.get("samples") or 0) - syscalls, syscalls


def _calibrated(user: int, syscalls: int, totals: tuple[int, int], user_us: float,
                system_us: float) -> float:
    """µs per request of `user` user-space and `syscalls` system-call samples."""
    all_user, all_sys = totals
    return ((user / all_user * user_us if all_user else 0.0)
            + (syscalls / all_sys * system_us if all_sys else 0.0))


def stage_table(profile: Mapping[str, Any], user_us: float | None,
                system_us: float | None) -> list[dict[str, Any]]:
    """Per stage: µs per request, the part of it in system calls, its share of the CPU and of
    the samples. The user-space samples divide the user time per request, the system-call
    samples the system time (see `calibration_note`)."""
    totals = _split(profile)
    cpu = None if user_us is None or system_us is None else user_us + system_us
    out = []
    for s in profile.get("stages", []):
        user = s["samples"] - s["syscall_samples"]
        us = (None if user_us is None or system_us is None
              else _calibrated(user, s["syscall_samples"], totals, user_us, system_us))
        sys_us = (None if system_us is None
                  else _calibrated(0, s["syscall_samples"], totals, 0.0, system_us))
        out.append({"stage": s["stage"], "us": us, "syscall_us": sys_us,
                    "share": None if us is None or not cpu else us / cpu,
                    "sample_share": s["samples"] / (profile.get("samples") or 1)})
    return out


def frame_us(profile: Mapping[str, Any], entry: Mapping[str, Any], user_us: float | None,
             system_us: float | None) -> float | None:
    """µs per request of a top frame's own samples, calibrated as the stages are."""
    if user_us is None or system_us is None:
        return None
    n = entry["self"]
    return _calibrated(0 if entry.get("syscall") else n, n if entry.get("syscall") else 0,
                       _split(profile), user_us, system_us)

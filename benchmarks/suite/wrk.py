"""Driving `wrk` (a C load client, Debian's package) from the suite: its command line, the
script that posts one JSON body per request (`wrk.lua`, optionally at a fixed rate), and the
summary line the script prints."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolgate.bench import BenchError

SCRIPT = Path(__file__).with_name("wrk.lua")
SUMMARY_PREFIX = "POOLGATE_WRK "
BODY_ENV = "POOLGATE_WRK_BODY"
RATE_ENV = "POOLGATE_WRK_RATE"
INSTALL_HINT = ("install it with `apt-get install wrk` (Debian/Ubuntu; `make bench-saturation` "
                "does) or put a wrk 4.x on PATH")


@dataclass(frozen=True, slots=True)
class WrkRun:
    """One invocation: where, how long, how many connections, and at what rate (None: as fast
    as the connections allow, i.e. saturation)."""

    url: str
    body: str
    seconds: float
    connections: int = 64
    threads: int = 1
    rate: float | None = None

    def argv(self, binary: str = "wrk", script: Path = SCRIPT) -> list[str]:
        # wrk takes whole seconds; at least one.
        duration = max(1, round(self.seconds))
        return [binary, f"-t{self.threads}", f"-c{self.connections}", f"-d{duration}s",
                "--timeout", "10s", "-s", str(script), self.url]

    def env(self) -> dict[str, str]:
        """The script's settings; the rate is per wrk thread."""
        out = {BODY_ENV: self.body}
        if self.rate is not None:
            out[RATE_ENV] = f"{self.rate / self.threads:g}"
        return out

    def shown(self, url: str = "http://127.0.0.1:$PORT/v1/completions") -> str:
        """The command as the report shows it (the body in a shell variable)."""
        rate = "" if self.rate is None else f"{RATE_ENV}={self.rate / self.threads:g} "
        argv = self.argv(script=Path("benchmarks/suite/wrk.lua"))
        argv[-1] = url
        return f'{BODY_ENV}="$BODY" {rate}' + " ".join(argv)


@dataclass(frozen=True, slots=True)
class WrkResult:
    """What `wrk` reported: counts, the run's duration and latency percentiles (seconds)."""

    requests: int
    duration: float
    errors: Mapping[str, int]
    p50: float
    p90: float
    p99: float
    p999: float
    max: float
    mean: float

    @property
    def throughput(self) -> float:
        return self.requests / self.duration if self.duration > 0 else 0.0

    @property
    def failed(self) -> int:
        """Responses with a status above 399, plus socket errors and timeouts."""
        return sum(self.errors.values())

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "duration": self.duration, "errors": dict(self.errors),
                "p50": self.p50, "p90": self.p90, "p99": self.p99, "p999": self.p999,
                "max": self.max, "mean": self.mean}


def parse_summary(output: str) -> WrkResult:
    """The result of the `POOLGATE_WRK {...}` line `wrk.lua` prints when wrk is done."""
    for line in output.splitlines():
        if line.startswith(SUMMARY_PREFIX):
            data = json.loads(line[len(SUMMARY_PREFIX):])
            lat = data["latency_us"]
            return WrkResult(
                requests=int(data["requests"]), duration=data["duration_us"] / 1e6,
                errors={k: int(v) for k, v in data["errors"].items() if int(v)},
                p50=lat["p50"] / 1e6, p90=lat["p90"] / 1e6, p99=lat["p99"] / 1e6,
                p999=lat["p999"] / 1e6, max=lat["max"] / 1e6, mean=lat["mean"] / 1e6)
    raise BenchError("wrk printed no summary line:\n" + output.strip()[-2000:])


def wrk_binary() -> str:
    """The `wrk` on PATH."""
    found = shutil.which("wrk")
    if found is None:
        raise BenchError(f"wrk is not installed: {INSTALL_HINT}")
    return found


async def run_wrk(run: WrkRun) -> WrkResult:
    """Run `wrk` to the end and parse its summary; BenchError when it fails or nothing
    completed."""
    proc = await asyncio.create_subprocess_exec(
        *run.argv(wrk_binary()), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env={**os.environ, **run.env()})
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=run.seconds + 60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BenchError(f"wrk did not finish within {run.seconds + 60:.0f} s") from None
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    text = out.decode(errors="replace")
    if proc.returncode != 0:
        raise BenchError(f"wrk exited with status {proc.returncode}: {text.strip()[-2000:]}")
    result = parse_summary(text)
    if result.requests == 0:
        raise BenchError(f"no request completed through {run.url}: {text.strip()[-1000:]}")
    return result

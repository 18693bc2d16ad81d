"""A warm-up that caches every group's prefix before a capacity trial is measured.

On the capacity section's fleet a request whose 2,048-token system prompt is not cached takes
about 0.5 s of wall-clock time to prefill, as much as the TTFT target itself. The harness's
warm-up draws requests by popularity, so with Zipf-skewed groups a few dozen of them leave the
coldest groups uncached, and the measured phase then pays their first prefill: in a short trial
at a low rate those few requests are more than a tenth of the total and push the TTFT p90 over
the target at any load (a quick run failed every front at 4 requests/s that way). Sending one
request of every group through the front first, all at once, gives each front the same start:
every prefix cached on the replica the front chose for it, and the front aware of it.
"""

from __future__ import annotations

import asyncio
import time

from poolgate.bench import BenchConfig, BenchError, BenchRequest, Workload
from poolgate.bench.client import make_session, send_request

# How far into the warm-up stream to look for a request of every group.
SCAN_LIMIT = 100_000


def one_per_group(config: BenchConfig) -> list[BenchRequest]:
    """The first request of every group in the workload's warm-up stream, in order of first
    appearance (the hottest groups come first)."""
    workload = Workload(config)
    wanted = config.workload.groups
    found: dict[int, BenchRequest] = {}
    for i in range(SCAN_LIMIT):
        req = workload.request(i, warmup=True)
        if req.group is not None and req.group not in found:
            found[req.group] = req
            if len(found) == wanted:
                break
    return list(found.values())


async def send_each(url: str, config: BenchConfig, requests: list[BenchRequest]) -> None:
    """Send every request at once and wait for all; BenchError if one failed."""
    headers = {"Content-Type": "application/json", **dict(config.headers)}
    t0 = time.perf_counter()
    async with make_session(config.timeout) as session:
        records = await asyncio.gather(*(
            send_request(session, url, req, stream=config.stream, headers=headers, t0=t0,
                         scheduled=0.0) for req in requests))
    failed = [r for r in records if not r.ok]
    if failed:
        raise BenchError(f"group warm-up: {len(failed)} of {len(records)} requests failed "
                         f"({failed[0].error}: {failed[0].error_detail})")

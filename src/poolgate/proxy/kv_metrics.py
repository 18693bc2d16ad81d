"""The gateway's KV-event streams as figures for /metrics (observability/kv_events.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from poolgate.datalayer.kv_events import KVEventsHub
from poolgate.observability.kv_events import KVStreamFigures


def kv_stream_figures(hub: KVEventsHub,
                      now: Callable[[], float] = time.monotonic) -> list[KVStreamFigures]:
    """One entry per subscribed endpoint (an endpoint two sources follow: the first one's).
    `now` is the event loop's clock (asyncio's and uvloop's are both the monotonic clock)."""
    at = now()
    out: dict[str, KVStreamFigures] = {}
    for stream in hub.streams():
        if stream.address in out:
            continue
        s, index = stream.stats, stream.index
        out[stream.address] = KVStreamFigures(
            endpoint=stream.address, state=stream.state(at).value, batches=s.batches,
            stored=s.stored, removed=s.removed, cleared=s.cleared, gaps=s.gaps,
            restarts=s.restarts, replays_ok=s.replays_ok, replays_failed=s.replays_failed,
            blocks_dropped=s.blocks_dropped, decode_errors=s.decode_errors,
            disconnects=s.disconnects,
            blocks=index.blocks(stream.address), block_size=index.block_size(stream.address))
    return list(out.values())

"""What the gateway measures on one inference response as it relays it.

The relay calls `chunk()` for every body chunk of a streamed response (or `body()` once for a
buffered one). Per chunk that is one clock read, one bucket increment and two reference
moves: no parsing. The first chunk's arrival is the time to first token (the model server
sends the response head and the first SSE event together with the first token: vLLM's role
chunk, or the first text chunk of a completion); the gaps between later chunks are the
inter-token latencies (a chunk is what arrived since the relay last read, so several events
read at once count as one gap). The last three chunks are kept to find the final `usage`
event in once the stream is over (`usage()`), since an event may arrive split over reads.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from time import monotonic

from poolgate.observability.usage import Usage, find_usage

# llm-d's `llm_d_epp_request_streaming_itl_seconds` buckets (docs/metrics.md).
ITL_BUCKETS: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0,
)

_NO_GAPS: list[int] = []  # shared and never written: a meter that saw no chunk


class ResponseMeter:
    """One inference request's measurements, read once when it ends (`proxy/recording.py`).

    `running`: the model label counted in the running-requests gauge when the request began;
    `first`: gateway-clock time of the first chunk of a body relayed chunk by chunk;
    `streamed`: the response was SSE; `gaps` / `gap_sum`: inter-chunk gaps per `ITL_BUCKETS`
    bucket (+Inf last) and their sum.
    """

    # Class-level defaults: a meter is made per request and most are never streamed, so only
    # what differs is set on the instance (cheaper than initialising every slot).
    first: float | None = None
    streamed: bool = False
    gaps: list[int] = _NO_GAPS  # replaced by a list of its own at the first chunk
    gap_sum: float = 0.0
    _last: float = 0.0  # monotonic: the gaps are measured finer than the loop's clock
    _body: bytes | None = None
    held: int = 0  # bytes of a buffered body kept for its `usage`
    _tail1: bytes = b""
    _tail2: bytes = b""
    _tail3: bytes = b""

    def __init__(self, running: str | None, clock: Callable[[], float]) -> None:
        self.running = running
        self._clock = clock  # the gateway's clock (loop time), which `started` is read from

    def body(self, data: bytes) -> None:
        """A buffered (non-streamed) body arrived whole: only its `usage` is read, at the end
        (its first token came with the whole body: its TTFT is the request's duration)."""
        self._body = data
        self.held = len(data)

    def chunk(self, data: bytes) -> None:
        """One chunk of a streamed body was read (before it is written to the client)."""
        now = monotonic()
        if self.first is None:
            self.first = self._clock()
            self.gaps = [0] * (len(ITL_BUCKETS) + 1)
        else:
            gap = now - self._last
            self.gaps[bisect_left(ITL_BUCKETS, gap)] += 1
            self.gap_sum += gap
        self._last = now
        self._tail3, self._tail2, self._tail1 = self._tail2, self._tail1, data

    def usage(self) -> Usage | None:
        """The `usage` the model server reported (see `poolgate.observability.usage`)."""
        if self._body is not None:
            return find_usage(self._body)
        if self.first is None:
            return None
        return find_usage(b"".join((self._tail3, self._tail2, self._tail1)))

"""The one release point of a request: everything it holds is given back here, exactly once.

A request holds, per attempt, a circuit-breaker ticket, an in-flight count on its endpoint and
an upstream connection; when it ends, its metrics and access-log line are due. `end_attempt()`
ends the current attempt (before a retry, or at the end) and `close()` ends the request;
both are idempotent, and `close()` runs from the request's `finally`, so a client that goes away,
a timeout or an unexpected error release the same way as a normal answer (in the manner of
httpcore's `PoolByteStream.aclose()`). Nothing else in the request path releases anything.

What ending an attempt does, in order:
- the endpoint's in-flight count (and "awaiting first token") ends;
- the upstream connection goes back to the pool when its response was relayed to the end,
  otherwise it is closed, so the model server sees the disconnect and frees the request's slot;
- the breaker ticket is released (waking the first pending request);
- the attempt's result (status or failure) feeds the cluster's outlier detection.

The prefix index learns that an endpoint holds a prompt when that endpoint answers with a
non-5xx head (for a stream, with its first token: the prompt's KV blocks are then in its cache),
never at pick time, so a request refused by the breaker or failed over records nothing.
"""

from __future__ import annotations

from collections.abc import Callable

from poolgate.datalayer import EndpointStore
from poolgate.http.client import UpstreamResponse
from poolgate.proxy.context import RequestContext
from poolgate.proxy.steering import Steering
from poolgate.traffic.circuit_breaker import Ticket
from poolgate.traffic.retry import FailureKind


class RequestLease:
    """What one request holds; see the module docstring."""

    __slots__ = ("_awaiting", "_clock", "_closed", "_ctx", "_finish", "_result", "_reusable",
                 "_steering", "_store", "endpoint", "ticket", "upstream")

    def __init__(self, ctx: RequestContext, store: EndpointStore, steering: Steering,
                 clock: Callable[[], float], finish: Callable[[RequestContext], None]) -> None:
        self._ctx = ctx
        self._store = store
        self._steering = steering
        self._clock = clock
        self._finish = finish  # metrics and access log, from the finished context
        self._closed = False
        self.endpoint: str | None = None
        self.ticket: Ticket | None = None
        self.upstream: UpstreamResponse | None = None
        self._awaiting = False
        self._result: int | FailureKind | None = None
        self._reusable = False

    # -- the attempt -----------------------------------------------------------------------------

    def hold(self, endpoint: str, ticket: Ticket) -> None:
        """An attempt to `endpoint` starts, admitted by the breaker with `ticket`."""
        if self.endpoint is not None:
            self.end_attempt()
        self.endpoint = endpoint
        self.ticket = ticket
        llm = self._ctx.llm
        streamed = llm is not None and llm.stream
        self._awaiting = streamed
        self._store.begin(endpoint, streamed)

    def answered(self, upstream: UpstreamResponse) -> None:
        """The endpoint's response head arrived."""
        self.upstream = upstream
        self._result = upstream.status
        endpoint = self.endpoint
        assert endpoint is not None
        if self._awaiting:
            self._store.answered(endpoint)
            self._awaiting = False
        ctx = self._ctx
        cluster = ctx.cluster
        if upstream.status < 500 and ctx.llm is not None and cluster is not None \
                and cluster.picker is not None:
            cluster.picker.scheduler.on_picked(ctx.llm, endpoint)

    def failed(self, failure: FailureKind) -> None:
        """The attempt ended without a response."""
        self._result = failure

    def relayed(self, completed: bool) -> None:
        """The response went to the client; `completed`: to its end (the connection is clean)."""
        self._reusable = completed

    def end_attempt(self) -> None:
        """Give back what the current attempt holds (idempotent)."""
        endpoint = self.endpoint
        if endpoint is None:
            return
        self.endpoint = None
        self._store.end(endpoint, self._awaiting)
        self._awaiting = False
        upstream = self.upstream
        if upstream is not None:
            self.upstream = None
            if self._reusable:
                upstream.release()
            else:
                upstream.close()
        self._reusable = False
        ticket = self.ticket
        if ticket is not None:
            self.ticket = None
            ticket.release()
        result = self._result
        if result is not None:
            self._result = None
            cluster = self._ctx.cluster
            # Only an outlier detector, or a connection that could not be opened, needs it.
            if cluster is not None and (cluster.outlier is not None
                                        or result is FailureKind.CONNECT_FAILURE):
                self._steering.record(cluster, endpoint, result, self._clock())

    # -- the request -----------------------------------------------------------------------------

    def close(self) -> None:
        """End the request: the last attempt, then its metrics and access log (idempotent)."""
        if self._closed:
            return
        self._closed = True
        try:
            self.end_attempt()
        finally:
            self._finish(self._ctx)

    @property
    def closed(self) -> bool:
        """Whether `close()` ran."""
        return self._closed

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("attempt" if self.endpoint else "open")
        return f"<RequestLease {state} endpoint={self.endpoint} attempts={len(self._ctx.attempts)}>"

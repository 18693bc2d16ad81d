"""The outcome stage's inference figures: what a finished request to an InferencePool adds to
the Inference Extension's and llm-d's series (`poolgate.observability.inference`), and the
per-pool gauges read from the datalayer when /metrics is scraped.

What is recorded when, following the endpoint picker upstream (docs/metrics.md):

- a request whose model was read counts in `running_requests` until it ends;
- `request_total` and `request_sizes`: once it was admitted and an endpoint picked for it;
- `request_error_total`: an answer from the model server other than 200, or one that broke off
  (`ModelServerError`), or an error the gateway answered itself (its status mapped to the
  Inference Extension's codes);
- duration, response size, TTFT, ITL, TPOT and tokens: once the model server's answer reached
  the client whole; tokens only from the `usage` the model server reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from poolgate.config.snapshot import Snapshot
from poolgate.observability.inference import (
    BAD_REQUEST,
    FORBIDDEN,
    INTERNAL,
    MODEL_SERVER_ERROR,
    NOT_FOUND,
    RESOURCE_EXHAUSTED,
    SERVICE_UNAVAILABLE,
    UNAUTHORIZED,
    UNKNOWN_ERROR,
    InferenceMetrics,
)
from poolgate.observability.meter import ResponseMeter
from poolgate.observability.pools import PoolGauges
from poolgate.proxy.context import RequestContext

if TYPE_CHECKING:
    from poolgate.proxy.gateway import Gateway

# The Inference Extension's error code of an answer the gateway gave itself, by status.
_GATEWAY_ERRORS = {
    400: BAD_REQUEST, 405: BAD_REQUEST, 408: BAD_REQUEST, 411: BAD_REQUEST, 413: BAD_REQUEST,
    414: BAD_REQUEST, 415: BAD_REQUEST, 431: BAD_REQUEST,
    401: UNAUTHORIZED, 403: FORBIDDEN, 404: NOT_FOUND, 429: RESOURCE_EXHAUSTED,
    500: INTERNAL, 502: SERVICE_UNAVAILABLE, 503: SERVICE_UNAVAILABLE, 504: SERVICE_UNAVAILABLE,
}
# Envoy flags of a model server's answer that did not end normally: reset mid-body, timed out.
_BROKEN = frozenset({"UPE", "UT"})


class InferenceRecorder:
    """Records inference requests into `metrics` (see the module docstring)."""

    def __init__(self, metrics: InferenceMetrics, clock: Callable[[], float]) -> None:
        self._metrics = metrics
        self._labels = metrics.labels
        self._clock = clock
        self._pinned: Snapshot | None = None

    def begin(self, ctx: RequestContext) -> ResponseMeter:
        """The request's body was read (its model, if any, is in `ctx.inference`)."""
        snapshot = ctx.runtime.snapshot
        if snapshot is not self._pinned:
            self._pin(snapshot)
        inference = ctx.inference
        running = None
        if inference is not None and inference.model is not None:
            running = self._labels.label(inference.model)
            counts = self._metrics.running
            counts[running] = counts.get(running, 0) + 1
        return ResponseMeter(running, self._clock)

    def finish(self, ctx: RequestContext, elapsed: float) -> str:
        """The request ended `elapsed` seconds after it arrived (called once, by `finish`);
        returns its `model_name` label value ("" when it is no inference request or has no
        model)."""
        meter = ctx.meter
        outcome = ctx.outcome
        status = outcome.status or ctx.request.status
        if meter is None:
            # Refused before its body was read (bad JSON, too large, authentication).
            backend = ctx.backend
            if backend is not None and backend.pool is not None:
                code = _error_code(status, outcome.flag, upstream=False)
                if code is not None:
                    self._metrics.series("", "", 0).count_error(code)
            return ""
        metrics = self._metrics
        if meter.running is not None:
            metrics.running[meter.running] -= 1
        attempts = ctx.attempts
        last = attempts[-1].status if attempts else None
        upstream = last is not None and last == status
        inference = ctx.inference
        model = inference.model if inference is not None else None
        target = inference.target_model if inference is not None else None
        labels = self._labels
        if upstream and 200 <= status < 300:
            model, target = labels.served_pair(model, target)
        else:
            model, target = labels.label(model), labels.label(target)
        flag = outcome.flag
        code = None
        if not (upstream and status == 200 and flag == "-"):  # the common case skips this
            code = _error_code(status, flag, upstream)
        elapsed_if_answered = ttft = None
        if upstream and flag == "-":
            # The model server's answer reached the client whole: latency, size, tokens.
            elapsed_if_answered = elapsed
            if meter.streamed and meter.first is not None:
                ttft = meter.first - ctx.started
        metrics.record((model, target, ctx.priority or 0,
                        len(ctx.request.body) if attempts else None, code,
                        elapsed_if_answered, outcome.bytes_sent, ttft, meter))
        return model

    def _pin(self, snapshot: Snapshot) -> None:
        """The configured model names always label as themselves."""
        names: set[str] = set()
        for spec in snapshot.inference_models.values():
            names.add(spec.model_name)
            names.update(t.name for t in spec.target_models)
        self._labels.pin(names)
        self._pinned = snapshot


def _error_code(status: int, flag: str, upstream: bool) -> str | None:
    """The `error_code` of an answer, or None when it is not an error."""
    if upstream:
        return MODEL_SERVER_ERROR if status != 200 or flag in _BROKEN else None
    if flag == "DT":  # cut by the gateway's own shutdown
        return SERVICE_UNAVAILABLE
    if status < 400:  # 0: the client went away before an answer
        return None
    return _GATEWAY_ERRORS.get(status, UNKNOWN_ERROR)


def pool_gauges(gateway: Gateway) -> list[PoolGauges]:
    """Every pool's gauges now. As upstream, an endpoint counts as ready, and in the averages,
    while its scraped metrics are fresh (within the gateway's staleness bound)."""
    store, staleness = gateway.store, gateway.options.staleness
    now = time.monotonic()  # the scraper's clock
    pools = list(gateway.snapshot.pools.values())
    taken: dict[str, int] = {}
    for pool in pools:
        taken[pool.name] = taken.get(pool.name, 0) + 1
    out: list[PoolGauges] = []
    for pool in pools:
        fresh = [(address, signals) for address in pool.addresses
                 if (signals := store.fresh_signals(address, now, staleness)) is not None]
        n = len(fresh)
        out.append(PoolGauges(
            # The pool's name, as upstream; namespace/name when two namespaces share it.
            name=pool.name if taken[pool.name] == 1 else pool.key,
            ready=n,
            average_kv_cache=sum(s.kv_usage for _, s in fresh) / n if n else None,
            average_queue=sum(s.waiting for _, s in fresh) / n if n else None,
            average_running=sum(s.running for _, s in fresh) / n if n else None,
            queues=[(address, s.waiting) for address, s in fresh],
        ))
    return out

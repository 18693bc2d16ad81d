"""The gateway's request path, as its stages: resolve -> authenticate -> inspect -> admit ->
attempt -> outcome.

- resolve: route and backendRef (sync, no I/O);
- authenticate: the SecurityPolicy that applies, if any: API key and/or JWT (sync; 401/403);
- inspect: the rule's filters, the body limit, InferenceModel / InferenceObjective (sync);
- admit: saturation shedding, then the local rate limit (sync decisions);
- attempt: pick an endpoint, take a circuit-breaker connection for it (waiting as pending when
  the breaker says so), send, retry before the first byte as the policy allows, relay;
- outcome: `RequestLease.close()` releases everything and records metrics and the access log.

Everything a request acts on comes from the `Runtime` that was current when it arrived (built
at swap, `poolgate.proxy.cluster`); a request never builds policy objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from types import MappingProxyType
from typing import Any

from poolgate.auth import AuthenticationFailed
from poolgate.balancing import RegionOrder
from poolgate.balancing.errors import BackendTimeout
from poolgate.balancing.metrics import BalancingMetrics
from poolgate.config.choice import choose_backend
from poolgate.config.filters import apply_request_filters
from poolgate.config.snapshot import Snapshot
from poolgate.core.errors import PoolgateError
from poolgate.core.pools import Pool
from poolgate.datalayer import EndpointStore
from poolgate.datalayer.health import HealthTracker
from poolgate.datalayer.kv_events import KVEventsHub
from poolgate.http.client import UpstreamFailure, UpstreamPool, UpstreamResponse, Upstreams
from poolgate.observability.access_log import AccessLog
from poolgate.observability.kv_events import KVEventsCollector
from poolgate.observability.live import LiveWindow
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.cluster import (
    BackendCluster,
    RuntimeSettings,
    build_runtime,
    kv_event_targets,
)
from poolgate.proxy.context import Attempt, RequestContext
from poolgate.proxy.errors import (
    BodyTooLarge,
    InternalError,
    InvalidBackend,
    MethodNotAllowed,
    NoRoute,
    send_error,
)
from poolgate.proxy.headers import upstream_request_headers
from poolgate.proxy.inference import OBJECTIVE_HEADER, route_inference
from poolgate.proxy.kv_metrics import kv_stream_figures
from poolgate.proxy.lease import RequestLease
from poolgate.proxy.models import merge_model_list
from poolgate.proxy.recording import InferenceRecorder, pool_gauges
from poolgate.proxy.relay import error_frame, relay
from poolgate.proxy.responder import Responder
from poolgate.proxy.steering import Steering
from poolgate.scheduling import RequestShed, SaturationDetector, request_from_body, should_shed
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.profiles import DEFAULT_PROFILE
from poolgate.scheduling.scheduler import Scheduler
from poolgate.traffic.circuit_breaker import Admitted, MustWait, Overflow, Ticket
from poolgate.traffic.errors import (
    CircuitOverflow,
    NoHealthyEndpoint,
    RateLimited,
    UpstreamConnectError,
    UpstreamReset,
    UpstreamTimeout,
)
from poolgate.traffic.outlier import OutlierDetector
from poolgate.traffic.pending import wait_for_admission
from poolgate.traffic.retry import AttemptOutcome, FailureKind, RetryPolicy
from poolgate.traffic.timeouts import DEFAULT_CONNECT_TIMEOUT

log = logging.getLogger("poolgate.gateway")


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Process-wide settings of the data plane (from the command line)."""

    max_body_bytes: int = 16 << 20
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    seed: int | None = None
    scheduler_profile: str = DEFAULT_PROFILE  # pools without the profile annotation use this
    # Profiles from --scheduler-config, by name (next to the built-in ones).
    custom_profiles: Mapping[str, SchedulerConfig] = field(
        default_factory=lambda: MappingProxyType({}))
    saturation_queue: int = 5
    saturation_kv: float = 0.8
    staleness: float = 2.0
    region: str | None = None  # the gateway's own region (multi-cluster balancing)
    region_order: tuple[str, ...] = ()  # regions nearest first


class Gateway:
    """Per-process gateway state that outlives requests: the current runtime (swapped atomically
    on reload), per-endpoint live state, active health results, the upstream connections."""

    def __init__(self, snapshot: Snapshot, options: GatewayOptions, metrics: GatewayMetrics,
                 access_log: AccessLog) -> None:
        self.options = options
        self.metrics = metrics
        self.access_log = access_log
        self.store = EndpointStore()
        # Fed by the server's active health checker; a passing probe makes an endpoint that a
        # connect failure took out of the candidates reachable again.
        self.health = HealthTracker(on_pass=self.store.mark_reachable)
        self.saturation = SaturationDetector(options.saturation_queue, options.saturation_kv,
                                             options.staleness)
        self.rnd = random.Random(options.seed)
        self.upstreams: Upstreams = UpstreamPool(options.connect_timeout)
        self.steering = Steering(self.store, self.health, options.staleness,
                                 BalancingMetrics(metrics.registry))
        self.active_requests = 0
        # Called with a pool's addresses for every request bound for it (the server sets the
        # metrics scraper's `pool_requested`: an idle pool's scrapes speed up again).
        self.on_pool_request: Callable[[tuple[str, ...]], None] | None = None
        # The Inference Extension's per-model series and per-pool gauges (recording.py).
        self.recorder = InferenceRecorder(metrics.inference, self.now)
        metrics.pools.source = partial(pool_gauges, self)
        # The last minutes second by second (the status page's charts): see `_record_live`.
        self.live = LiveWindow()
        # Set when the drain time is over and the requests still running are about to be cut.
        self.cutting = False
        # Cached: on Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        # The model servers' KV events, for pickers with a precise prefix scorer: subscribed to
        # the endpoints of the pools that use them at every swap, started and closed by the
        # server (GatewayServer).
        self.kv_events = KVEventsHub()
        metrics.registry.register(KVEventsCollector(partial(kv_stream_figures, self.kv_events)))
        self._settings = RuntimeSettings(
            connect_timeout=options.connect_timeout,
            scheduler_profile=options.scheduler_profile,
            custom_profiles=options.custom_profiles,
            staleness=options.staleness,
            seed=options.seed,
            region_order=RegionOrder(options.region, options.region_order),
            scheduler_timings=metrics.scheduling,
            kv_events=self.kv_events,
        )
        self.runtime = build_runtime(snapshot, None, self._settings, self.store)
        self.kv_events.set_targets(kv_event_targets(self.runtime))

    # -- configuration ---------------------------------------------------------------------------

    @property
    def snapshot(self) -> Snapshot:
        """The configuration new requests use."""
        return self.runtime.snapshot

    def swap(self, snapshot: Snapshot) -> None:
        """Install a new configuration; requests already running finish on the runtime they
        started with. Live state carries over where its spec is unchanged (`build_runtime`)."""
        self.runtime = build_runtime(snapshot, self.runtime, self._settings, self.store)
        self.kv_events.set_targets(kv_event_targets(self.runtime))
        self.store.retain(self.pool_addresses())

    def pool_addresses(self) -> list[str]:
        """Every InferencePool endpoint of the current snapshot (what the scraper watches)."""
        seen: dict[str, None] = {}
        for pool in self.snapshot.pools.values():
            for address in pool.addresses:
                seen[address] = None
        return list(seen)

    def scheduler_profile_of(self, pool: Pool) -> str:
        """The endpoint-picker profile serving `pool`."""
        return self.runtime.pickers[pool.key].profile

    def scheduler(self, pool: Pool) -> Scheduler:
        """The pool's endpoint picker."""
        return self.runtime.pickers[pool.key].scheduler

    def outlier_detector(self, backend_key: str) -> OutlierDetector | None:
        """The passive outlier detector of a backendRef, if it has one (for /status)."""
        cluster = self.runtime.clusters.get(backend_key)
        if cluster is None or cluster.outlier is None:
            return None
        return cluster.outlier.detector

    async def close(self) -> None:
        """Close the upstream connections."""
        await self.upstreams.close()

    def now(self) -> float:
        """The event loop's clock (the loop is looked up once, see `_loop`)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    # -- the request path ------------------------------------------------------------------------

    async def handle(self, request: Responder, listener_port: int) -> None:
        """Answer one client request that arrived on the Gateway listener `listener_port`."""
        ctx = RequestContext(request, listener_port, self.now(), self.runtime)
        lease = RequestLease(ctx, self.store, self.steering, self.now, self.finish)
        self.active_requests += 1
        try:
            self.resolve(ctx)
            if ctx.cluster is not None and ctx.cluster.authenticator is not None:
                self.authenticate(ctx)
            self.inspect(ctx)
            self.admit(ctx)
            await self.attempt(ctx, lease)
        except PoolgateError as e:
            outcome = ctx.outcome
            if outcome.flag == "-":
                outcome.flag = e.flag
            if e.status >= 500 or e.flag != "-":
                outcome.error = e.message
            await send_error(request, e, envoy_headers=ctx.runtime.snapshot.envoy_headers)
        except asyncio.CancelledError:
            if self.cutting:
                # Cut by the gateway at the end of its drain time, not by the client.
                ctx.outcome.flag = "DT"
                ctx.outcome.error = "cut at the end of the drain time (shutdown)"
            else:
                ctx.outcome.flag = "DC"  # downstream (client) connection terminated
            raise
        except Exception as e:
            # Never a traceback to the client; keep one in our log.
            # The path without its query string, which may carry a credential.
            log.exception("unexpected error serving %s %s", request.method,
                          request.raw_path.partition("?")[0])
            ctx.outcome.error = f"{type(e).__name__}: {e}"[:500]
            await send_error(request, InternalError())
        finally:
            self.active_requests -= 1
            lease.close()

    # -- resolve ---------------------------------------------------------------------------------

    def resolve(self, ctx: RequestContext) -> None:
        """The route rule and its backendRef; the upstream path and headers as the client sent
        them (minus what only a proxy may set)."""
        request, snap = ctx.request, ctx.runtime.snapshot
        if request.method in _UNROUTED_METHODS:
            _refuse_method(request.method)
        decision = snap.route(ctx.listener_port, request.host, request.method, request.path,
                              request.headers, request.query)
        if decision is None:
            raise NoRoute(f"No route matches {request.method} {request.host}{request.path}.")
        ctx.route = decision
        self.metrics.route_series(decision.route.key).in_flight += 1
        rule = decision.rule
        backend = choose_backend(rule, self.rnd)
        if backend.error is not None:
            raise InvalidBackend(f"The route's backend {backend.kind}/{backend.name} is invalid: "
                                 f"{backend.error}")
        ctx.backend = backend
        ctx.cluster = ctx.runtime.clusters[backend.key]
        ctx.path = request.raw_path
        ctx.headers = upstream_request_headers(request.headers.raw, request.headers,
                                               request.client_address)

    # -- authenticate ----------------------------------------------------------------------------

    def authenticate(self, ctx: RequestContext) -> None:
        """Check the credentials a SecurityPolicy asks for (401/403), as Envoy's authentication
        filters do once the route is known and before anything reads the body; record the
        client id and make the policy's edits to what goes upstream. `handle` calls it only when
        the rule has a policy."""
        assert ctx.cluster is not None and ctx.cluster.authenticator is not None
        authenticator = ctx.cluster.authenticator
        try:
            passed = authenticator.authenticate(ctx.request, time.time())
        except AuthenticationFailed as e:
            ctx.outcome.error = e.detail
            raise
        ctx.client_id = passed.client_id
        ctx.path, ctx.headers = passed.apply(ctx.path, ctx.headers)

    # -- inspect ---------------------------------------------------------------------------------

    def inspect(self, ctx: RequestContext) -> None:
        """The rule's filters, the body limit and, for an InferencePool, the model and objective."""
        request, decision, backend = ctx.request, ctx.route, ctx.backend
        assert decision is not None and backend is not None
        if request.body_too_large:
            raise BodyTooLarge("The request body is larger than the gateway's limit of "
                               f"{self.options.max_body_bytes} bytes.")
        ctx.body = request.body
        rule = decision.rule
        # (The filters `apply_request_filters` applies; without any, it would only copy.)
        if rule.header_modifier is not None or rule.url_rewrite is not None:
            ctx.path, ctx.headers = apply_request_filters(rule, decision, ctx.path, ctx.headers)
        if backend.pool is not None:
            self._resolve_inference(ctx, backend.pool)

    def _resolve_inference(self, ctx: RequestContext, pool: Pool) -> None:
        """The InferenceModel (target model, criticality), the objective (priority) and what the
        endpoint picker reads."""
        request, snap = ctx.request, ctx.runtime.snapshot
        if self.on_pool_request is not None:
            self.on_pool_request(pool.addresses)
        if request.method == "GET" and ctx.path.partition("?")[0].endswith("/v1/models"):
            names = snap.pool_models(pool.key)
            if names:
                ctx.transform = partial(merge_model_list, names=names, created=int(time.time()))
        inference = route_inference(ctx.body, request.headers.get("content-type") or "",
                                    request.method, snap, pool.key, self.rnd)
        ctx.inference = inference
        ctx.body = inference.body
        ctx.meter = self.recorder.begin(ctx)
        if not pool.addresses:
            raise NoHealthyEndpoint()
        objective_name = request.headers.get(OBJECTIVE_HEADER)
        if objective_name:
            ctx.objective = objective_name
            objective = snap.objective(objective_name)
            if objective is not None:
                ctx.priority = objective.priority
        ctx.llm = request_from_body(inference.payload or {},
                                    target_model=inference.target_model or "",
                                    adapters=self.store.known_adapters(pool.addresses),
                                    criticality=inference.criticality, priority=ctx.priority)

    # -- admit -----------------------------------------------------------------------------------

    def admit(self, ctx: RequestContext) -> None:
        """Shed sheddable requests to a saturated pool (429), then the local rate limit (429);
        set the request's deadline. The circuit breaker admits each attempt (`attempt`)."""
        cluster = ctx.cluster
        assert cluster is not None
        self.shed(ctx)
        limiter = cluster.rate_limiter
        if limiter is not None:
            now = self.now()
            if not limiter.try_take(now):
                self.metrics.shed.labels(cluster.key, "rate_limited").inc()
                raise RateLimited(headers=limiter.ratelimit_headers(now))
        total = cluster.timeouts.total
        ctx.deadline = None if total is None else ctx.started + total
        # GCPBackendPolicy timeoutSec bounds the backend request too; the shorter limit wins.
        if cluster.timed_by is not None and cluster.timed_by.timeout is not None:
            ctx.deadline = ctx.started + cluster.timed_by.timeout

    def shed(self, ctx: RequestContext) -> None:
        """429 for a sheddable request (criticality, objective priority) to a saturated pool."""
        cluster, inference = ctx.cluster, ctx.inference
        pool = cluster.pool if cluster is not None else None
        if (pool is not None and inference is not None
                and should_shed(inference.criticality, ctx.priority, True)
                and self.saturation.is_saturated(pool.addresses, self.store, self.now())):
            self.metrics.shed.labels(pool.key, "saturated").inc()
            raise RequestShed()

    # -- attempt ---------------------------------------------------------------------------------

    async def attempt(self, ctx: RequestContext, lease: RequestLease) -> None:
        """Send to an endpoint, retrying before the first response byte as the policy allows,
        then relay the answer."""
        cluster = ctx.cluster
        assert cluster is not None
        tried: list[str] = []
        while True:
            address = self.pick(ctx, cluster, tried)
            tried.append(address)
            decision = cluster.breaker.try_acquire(
                address if cluster.breaker.limits.per_endpoint_max_connections is not None
                else None, len(tried) > 1)
            ticket = (decision.ticket if isinstance(decision, Admitted)
                      else await self._wait_for_connection(ctx, cluster, decision))
            lease.hold(address, ticket)
            attempt = Attempt(address)
            ctx.attempts.append(attempt)
            deadline = (ctx.deadline if cluster.timeouts.per_try is None
                        else cluster.timeouts.attempt_deadline(self.now(), ctx.deadline))
            failure = await self._send(ctx, cluster, lease, attempt, deadline)
            if failure is not None:
                if not self._retries_failure(cluster, failure, tried):
                    raise failure.error
            else:
                upstream = lease.upstream
                assert upstream is not None
                if cluster.retry is None or not self._retries_status(ctx, cluster,
                                                                      upstream.status):
                    await self._relay(ctx, cluster, lease, upstream, deadline)
                    return
            lease.end_attempt()
            await self._backoff(ctx, cluster.retry)

    def pick(self, ctx: RequestContext, cluster: BackendCluster, tried: list[str],
              allowed: frozenset[str] | None = None) -> str:
        """The endpoint for this attempt: the pool's picker over the usable endpoints not tried
        yet for this request (all of them when every one was tried), preferring endpoints below
        the breaker's `perEndpoint.maxConnections`; `allowed`: only these (the endpoint
        picker's subset hint; 503 when none of them is usable)."""
        now = self.now()
        if cluster.balancer is None and not self.store.unreachable:
            candidates = cluster.candidates  # nothing narrows them (the common case)
        else:
            candidates = self.steering.narrow(cluster, now)
        if allowed is not None:
            candidates = tuple(c for c in candidates if c in allowed)
            if not candidates:
                raise NoHealthyEndpoint()
        breaker = cluster.breaker
        if breaker.limits.per_endpoint_max_connections is not None and len(candidates) > 1:
            candidates = tuple(c for c in candidates if breaker.endpoint_has_capacity(c)) \
                or candidates
        if len(candidates) == 1:
            return candidates[0]
        if tried:
            candidates = tuple(c for c in candidates if c not in tried) or candidates
        picker, llm = cluster.picker, ctx.llm
        if picker is None or llm is None:
            return self.rnd.choice(candidates)
        return picker.scheduler.pick(llm, candidates, now).address

    async def _wait_for_connection(self, ctx: RequestContext, cluster: BackendCluster,
                                   decision: MustWait | Overflow) -> Ticket:
        """The breaker did not admit the attempt at once: `CircuitOverflow` (503) for an
        overflow, else wait as pending, bounded by the request's deadline (then 504). (Per
        endpoint connections are counted only where a `perEndpoint.maxConnections` needs it.)"""
        if isinstance(decision, Overflow):
            self.metrics.overflows.labels(cluster.key, decision.reason).inc()
            raise CircuitOverflow(decision.reason)
        try:
            async with _deadline_scope(ctx.deadline):
                return await wait_for_admission(decision.waiter)
        except TimeoutError:
            # Waited as pending until the route timeout: Envoy answers 504 as well.
            raise _timeout_error(cluster) from None

    async def _send(self, ctx: RequestContext, cluster: BackendCluster, lease: RequestLease,
                    attempt: Attempt, deadline: float | None) -> _Failure | None:
        """Send the request and wait for the response head (then in `lease.upstream`); on a
        failure without a response, what failed and the error to answer if it is not retried."""
        request = ctx.request
        try:
            if deadline is None:
                upstream = await self.upstreams.request(
                    attempt.endpoint, request.method, ctx.path, ctx.headers, ctx.body,
                    cluster.connections)
            else:
                async with asyncio.timeout_at(deadline):
                    upstream = await self.upstreams.request(
                        attempt.endpoint, request.method, ctx.path, ctx.headers, ctx.body,
                        cluster.connections)
        except TimeoutError:
            self.metrics.upstream_errors.labels(cluster.key, "timeout").inc()
            attempt.failure = FailureKind.TIMEOUT.value
            lease.failed(FailureKind.TIMEOUT)
            if deadline != ctx.deadline:
                # The attempt's own limit fired (perRetry.timeout / backendRequest), not the
                # request's: Envoy may retry it, else answers a plain 504.
                return _Failure(FailureKind.TIMEOUT, UpstreamTimeout(), per_try=True)
            return _Failure(FailureKind.TIMEOUT, _timeout_error(cluster))
        except UpstreamFailure as f:
            self.metrics.upstream_errors.labels(cluster.key, f.reason).inc()
            kind = _failure_kind(f.reason)
            attempt.failure = f.reason
            lease.failed(kind)
            ctx.outcome.error = str(f)
            retried = len(ctx.attempts) > 1
            if kind is FailureKind.CONNECT_FAILURE:
                return _Failure(kind, UpstreamConnectError(retried=retried))
            return _Failure(kind, UpstreamReset(retried=retried))
        attempt.status = upstream.status
        lease.answered(upstream)
        ctx.outcome.ttfb = self.now() - ctx.started
        return None

    def _retries_failure(self, cluster: BackendCluster, failure: _Failure,
                         tried: list[str]) -> bool:
        """Whether an attempt that failed without a response is retried. The request's own
        deadline passing never is; without a retry policy, a connection that could not be opened
        is tried once more on another endpoint (the request never reached a model server)."""
        kind, retry, n = failure.kind, cluster.retry, len(tried) - 1
        if kind is FailureKind.TIMEOUT and not failure.per_try:
            return False
        if retry is not None:
            return (retry.should_retry(n, AttemptOutcome(failure=kind))
                    and self._retry_permitted(cluster))
        return (n == 0 and kind is FailureKind.CONNECT_FAILURE
                and any(c not in tried for c in cluster.candidates)
                and self._retry_permitted(cluster))

    def _retries_status(self, ctx: RequestContext, cluster: BackendCluster, status: int) -> bool:
        """Whether an answer with `status` is retried (its body is then never relayed). When
        the breaker refuses the retry, the answer goes to the client as is."""
        retry = cluster.retry
        n = len(ctx.attempts) - 1
        if retry is None or not retry.should_retry(n, AttemptOutcome(status=status)):
            return False
        self.metrics.upstream_errors.labels(cluster.key, f"status_{status}").inc()
        return self._retry_permitted(cluster)

    def _retry_permitted(self, cluster: BackendCluster) -> bool:
        """Whether the breaker allows one more retry now (`maxParallelRetries`)."""
        overflow = cluster.breaker.check_retry()
        if overflow is not None:
            self.metrics.overflows.labels(cluster.key, overflow.reason).inc()
            return False
        self.metrics.retries.labels(cluster.key).inc()
        return True

    async def _backoff(self, ctx: RequestContext, retry: RetryPolicy | None) -> None:
        """Envoy's jittered back-off before a retry (none without a retry policy), within the
        request's deadline."""
        if retry is None:
            return
        delay = retry.backoff(len(ctx.attempts) - 1, self.rnd)
        if ctx.deadline is not None:
            delay = min(delay, max(0.0, ctx.deadline - self.now()))
        await asyncio.sleep(delay)

    async def _relay(self, ctx: RequestContext, cluster: BackendCluster, lease: RequestLease,
                     upstream: UpstreamResponse, deadline: float | None) -> None:
        """Relay the response; record what reached the client."""
        request, outcome = ctx.request, ctx.outcome
        extra = None
        if ctx.runtime.snapshot.envoy_headers:
            ttfb = outcome.ttfb or 0.0
            extra = [("x-envoy-upstream-service-time", str(int(ttfb * 1000)))]
        # A stream cut by GCPBackendPolicy timeoutSec ends with an SSE error frame.
        cut_frame = None
        if cluster.timed_by is not None and deadline == ctx.deadline:
            cut_frame = error_frame(_timeout_error(cluster).message)
        try:
            result = await relay(request, upstream, extra, ctx.transform, deadline, cut_frame,
                                 ctx.meter)
        except TimeoutError:
            outcome.flag = "UT"  # before anything was sent: 504
            raise UpstreamTimeout() from None
        except UpstreamFailure as f:
            raise UpstreamReset(str(f)) from None
        lease.relayed(result.completed)
        outcome.status = result.status
        outcome.bytes_sent = result.bytes_sent
        if result.cut:
            outcome.flag = "UT"  # ended with an SSE error frame, not a reset
        elif result.timed_out:
            outcome.flag = "UT"
            outcome.error = UpstreamTimeout.default_message
            request.abort()
        elif not result.completed:
            outcome.flag = "UPE"  # the upstream reset mid-body
            request.abort()

    # -- outcome ---------------------------------------------------------------------------------

    def finish(self, ctx: RequestContext) -> None:
        """Metrics and the access-log line of a finished request (called once, by its lease)."""
        elapsed = self.now() - ctx.started
        outcome = ctx.outcome
        route = ctx.route_key
        # The inference series; and the model label, bounded (recording.py): a model no
        # InferenceModel and no model server knows counts as "unknown".
        model = self.recorder.finish(ctx, elapsed) or "-"
        self.metrics.count_request(route, model, outcome.status or ctx.request.status)
        if ctx.route is not None:
            series = self.metrics.route_series(route)
            series.in_flight -= 1
            series.duration.observe(elapsed)
            if outcome.ttfb is not None:
                series.ttfb.observe(outcome.ttfb)
        if self.access_log.enabled:
            self.access_log.write(ctx.access_record(elapsed, route, ctx.model))
        self._record_live(ctx, ctx.started + elapsed)

    def _record_live(self, ctx: RequestContext, now: float) -> None:
        """Count the finished request in `live`, with its time to first token when it was a
        stream that relayed one (the meter's first body bytes, as the TTFT series)."""
        meter, attempts = ctx.meter, ctx.attempts
        ttft = (meter.first - ctx.started
                if meter is not None and meter.streamed and meter.first is not None else None)
        self.live.record(now, ctx.outcome.status or ctx.request.status, ttft,
                         attempts[-1].endpoint if attempts else None)


@dataclass(frozen=True, slots=True)
class _Failure:
    """An attempt that ended without a response: why, what to answer if it is not retried, and
    whether its own per-attempt timeout (rather than the request's deadline) ended it."""

    kind: FailureKind
    error: PoolgateError
    per_try: bool = False


# CONNECT asks for a tunnel, which no HTTPRoute describes: Envoy answers 404 (no route matches an
# authority). TRACE would echo the request, credentials included, back to the client: refused.
_UNROUTED_METHODS = frozenset({"CONNECT", "TRACE"})


def _refuse_method(method: str) -> None:
    if method == "CONNECT":
        raise NoRoute("CONNECT is not routed: the gateway does not open tunnels.")
    raise MethodNotAllowed(f"{method} is not allowed by the gateway.")


# Entering asyncio.timeout_at(None) still costs a Timeout object and two running-loop lookups:
# most routes have no timeout, so they share one do-nothing scope instead.
_NO_DEADLINE: contextlib.nullcontext[None] = contextlib.nullcontext()


def _deadline_scope(deadline: float | None) -> contextlib.AbstractAsyncContextManager[Any]:
    """`asyncio.timeout_at(deadline)`, or a shared no-op scope when there is no deadline."""
    return _NO_DEADLINE if deadline is None else asyncio.timeout_at(deadline)


def _failure_kind(reason: str) -> FailureKind:
    try:
        return FailureKind(reason)
    except ValueError:
        return FailureKind.RESET  # e.g. a protocol error: the exchange broke before headers


def _timeout_error(cluster: BackendCluster) -> UpstreamTimeout:
    """504 for the timeout that fired: the GCPBackendPolicy's (with details) or the route's."""
    timed_by = cluster.timed_by
    if timed_by is not None and timed_by.timeout is not None:
        return BackendTimeout(timed_by.key, timed_by.timeout)
    return UpstreamTimeout()

"""The request path of the gateway: route, admit, pick an endpoint, proxy, account."""

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

from poolgate.balancing import RegionOrder
from poolgate.balancing.errors import BackendTimeout
from poolgate.config.build import SCHEDULER_PROFILE_ANNOTATION
from poolgate.config.policy import BackendPolicySpec, TrafficPolicy
from poolgate.config.snapshot import (
    Backend,
    Endpoint,
    Pool,
    RouteDecision,
    RouteRule,
    Snapshot,
    apply_request_filters,
    choose_backend,
)
from poolgate.datalayer import EndpointStore
from poolgate.http1 import UpstreamFailure, UpstreamPool, UpstreamResponse
from poolgate.observability.access_log import AccessLog
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.deadline_relay import error_frame, is_event_stream, relay_sse_until
from poolgate.proxy.downstream import DownstreamRequest
from poolgate.proxy.errors import (
    BodyTooLarge,
    InternalError,
    InvalidBackend,
    NoRoute,
    send_error,
)
from poolgate.proxy.headers import upstream_request_headers
from poolgate.proxy.inference import OBJECTIVE_HEADER, InferenceRequest, route_inference
from poolgate.proxy.models import merge_model_list
from poolgate.proxy.steering import BackendSteering, OutlierState, Steering
from poolgate.proxy.upstream import RelayOutcome, relay_response
from poolgate.scheduling import (
    RequestShed,
    SaturationDetector,
    Scheduler,
    build_scheduler,
    request_from_body,
    should_shed,
)
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.interfaces import LLMRequest
from poolgate.scheduling.profiles import DEFAULT_PROFILE
from poolgate.traffic.circuit_breaker import (
    Admitted,
    BreakerSet,
    CircuitBreaker,
    Overflow,
    Ticket,
)
from poolgate.traffic.errors import (
    CircuitOverflow,
    NoHealthyEndpoint,
    PoolgateError,
    RateLimited,
    UpstreamConnectError,
    UpstreamReset,
    UpstreamTimeout,
)
from poolgate.traffic.pending import wait_for_admission
from poolgate.traffic.rate_limit import LocalRateLimiter
from poolgate.traffic.retry import AttemptOutcome, FailureKind, RetryPolicy
from poolgate.traffic.timeouts import Timeouts, resolve_timeouts

log = logging.getLogger("poolgate.gateway")


@dataclass(frozen=True, slots=True)
class GatewayOptions:
    """Process-wide settings of the data plane (from the command line)."""

    max_body_bytes: int = 16 << 20
    connect_timeout: float = 10.0
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


@dataclass(slots=True)
class _PolicyState:
    """Per-process objects derived from one TrafficPolicy (rebuilt when the policy changes)."""

    policy: TrafficPolicy
    retry: RetryPolicy | None
    rate_limiter: LocalRateLimiter | None


class Gateway:
    """Per-process gateway state that outlives requests: the current snapshot (swapped atomically
    on reload), circuit breakers, per-endpoint in-flight counts, the upstream client."""

    def __init__(self, snapshot: Snapshot, options: GatewayOptions, metrics: GatewayMetrics,
                 access_log: AccessLog) -> None:
        self.snapshot = snapshot
        self.options = options
        self.metrics = metrics
        self.access_log = access_log
        self.breakers = BreakerSet()
        self.store = EndpointStore()
        self.saturation = SaturationDetector(options.saturation_queue, options.saturation_kv,
                                             options.staleness)
        self._schedulers: dict[str, tuple[str, Scheduler]] = {}
        self.rnd = random.Random(options.seed)
        self.session: UpstreamPool | None = None
        self.active_requests = 0
        # Cached: on Python 3.11 every asyncio.get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._policies: dict[tuple[str, str], _PolicyState] = {}
        # Per-rule results derived from the immutable snapshot, dropped on reload; keyed by
        # identity (hashing a frozen rule would hash all its fields on every request).
        self._timeouts: dict[int, tuple[RouteRule, Timeouts]] = {}
        self.steering = Steering(self.store, options.staleness,
                                 RegionOrder(options.region, options.region_order),
                                 metrics.registry)

    def swap(self, snapshot: Snapshot) -> None:
        """Install a new configuration; requests already running finish on the one they started
        with. Breakers of backendRefs that no longer exist are dropped."""
        self.snapshot = snapshot
        self.breakers.retain(b.key for r in snapshot.routes for rule in r.rules for b in rule.backends)
        self._policies.clear()
        self._timeouts.clear()
        self.steering.retain(snapshot)
        # Schedulers (and their prefix indexes) survive a reload when the pool keeps its profile.
        for key in list(self._schedulers):
            pool = snapshot.pools.get(key)
            if pool is None or self._profile_of(pool) != self._schedulers[key][0]:
                del self._schedulers[key]
            else:
                self._schedulers[key][1].retain(pool.addresses)
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
        return self._profile_of(pool)

    def _profile_of(self, pool: Pool) -> str:
        return pool.annotations.get(SCHEDULER_PROFILE_ANNOTATION, self.options.scheduler_profile)

    def scheduler(self, pool: Pool) -> Scheduler:
        """The pool's endpoint picker, built on first use."""
        entry = self._schedulers.get(pool.key)
        if entry is None:
            profile = self._profile_of(pool)
            entry = (profile, build_scheduler(self._scheduler_config(profile), self.store,
                                              seed=self.options.seed))
            self._schedulers[pool.key] = entry
        return entry[1]

    def _scheduler_config(self, profile: str) -> SchedulerConfig:
        """The named profile (built-in or from --scheduler-config) with the gateway's metrics
        staleness, unless a custom profile sets its own."""
        staleness = self.options.staleness
        config = self.options.custom_profiles.get(profile)
        if config is None:
            return SchedulerConfig(profile=profile, staleness=staleness)
        if "staleness" in config.model_fields_set:
            return config
        return config.model_copy(update={"staleness": staleness})

    def _policy_state(self, policy: TrafficPolicy) -> _PolicyState:
        key = (policy.namespace, policy.name)
        state = self._policies.get(key)
        if state is None or state.policy is not policy:
            state = _PolicyState(
                policy,
                RetryPolicy(policy.retry) if policy.retry is not None else None,
                LocalRateLimiter(policy.rate_limits) if policy.rate_limits else None,
            )
            self._policies[key] = state
        return state

    def _now(self) -> float:
        """The event loop's clock (the loop is looked up once, see `_loop`)."""
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        return loop.time()

    # -- the request path -------------------------------------------------------------------------

    async def handle(self, request: DownstreamRequest, listener_port: int) -> None:
        """Answer one client request that arrived on the Gateway listener `listener_port`."""
        started = self._now()
        snap = self.snapshot
        rec: dict[str, Any] = {
            "method": request.method, "path": request.raw_path, "route": "-", "model": "-",
            "endpoint": "-", "status": 0, "flag": "-", "attempts": 0,
        }
        self.active_requests += 1
        route_name = "-"
        ttfb: list[float] = []
        try:
            decision = snap.route(listener_port, request.host, request.method, request.path,
                                  request.headers, request.query)
            if decision is None:
                raise NoRoute(f"No route matches {request.method} {request.host}{request.path}.")
            route_name = decision.route.key
            rec["route"] = route_name
            series = self.metrics.route_series(route_name)
            series.in_flight += 1
            try:
                await self._serve_route(request, snap, decision, rec, started, ttfb)
            finally:
                series.in_flight -= 1
        except PoolgateError as e:
            if rec["flag"] == "-":
                rec["flag"] = e.flag
            if e.status >= 500 or e.flag != "-":
                rec["error"] = e.message
            await send_error(request, e, envoy_headers=snap.envoy_headers)
        except asyncio.CancelledError:
            rec["flag"] = "DC"  # downstream (client) connection terminated
            raise
        except Exception as e:
            # Never a traceback to the client; keep one in our log.
            log.exception("unexpected error serving %s %s", request.method, request.raw_path)
            rec["error"] = f"{type(e).__name__}: {e}"[:500]
            await send_error(request, InternalError())
        finally:
            self.active_requests -= 1
            elapsed = self._now() - started
            if rec["status"] == 0:
                rec["status"] = request.status
            rec["duration_ms"] = round(elapsed * 1000, 3)
            self.metrics.count_request(route_name, rec["model"], rec["status"])
            if route_name != "-":
                series = self.metrics.route_series(route_name)
                series.duration.observe(elapsed)
                if ttfb:
                    rec["ttfb_ms"] = round(ttfb[0] * 1000, 3)
                    series.ttfb.observe(ttfb[0])
            self.access_log.write(rec)

    async def _serve_route(self, request: DownstreamRequest, snap: Snapshot,
                           decision: RouteDecision, rec: dict[str, Any], started: float,
                           ttfb: list[float]) -> None:
        rule = decision.rule
        backend = choose_backend(rule, self.rnd)
        if backend.error is not None:
            raise InvalidBackend(f"The route's backend {backend.kind}/{backend.name} is invalid: "
                                 f"{backend.error}")
        if request.body_too_large:
            raise BodyTooLarge("The request body is larger than the gateway's limit of "
                               f"{self.options.max_body_bytes} bytes.")
        body = request.body
        path, headers = apply_request_filters(
            rule, decision, request.raw_path,
            upstream_request_headers(request.headers.raw, request.headers))

        inference: InferenceRequest | None = None
        transform: Callable[[bytes], bytes] | None = None
        if backend.pool is not None:
            if request.method == "GET" and path.partition("?")[0].endswith("/v1/models"):
                names = snap.pool_models(backend.pool.key)
                if names:
                    created = int(time.time())
                    transform = partial(merge_model_list, names=names, created=created)
            inference = route_inference(body, request.headers.get("Content-Type", ""),
                                        request.method, snap, backend.pool.key, self.rnd)
            body = inference.body
            if inference.model is not None:
                rec["model"] = inference.model
                if inference.target_model != inference.model:
                    rec["target_model"] = inference.target_model
            pool = backend.pool
            candidates = pool.addresses
            if not candidates:
                raise NoHealthyEndpoint()
            priority: int | None = None
            objective_name = request.headers.get(OBJECTIVE_HEADER)
            if objective_name:
                rec["objective"] = objective_name
                objective = snap.objective(objective_name)
                if objective is not None:
                    priority = objective.priority
            now = self._now()
            if (should_shed(inference.criticality, priority, True)
                    and self.saturation.is_saturated(candidates, self.store, now)):
                self.metrics.shed.labels(pool.key, "saturated").inc()
                raise RequestShed()
            target = inference.target_model or ""
            pick = _PoolPick(
                self.scheduler(pool),
                request_from_body(inference.payload or {}, target_model=target,
                                  adapters=self.store.known_adapters(candidates),
                                  criticality=inference.criticality, priority=priority),
                self.steering.for_backend(snap, backend, pool, rule.policy),
            )
        else:
            assert backend.host is not None and backend.port is not None
            candidates = (Endpoint(backend.host, backend.port).address,)
            pick = None

        policy = rule.policy
        state = self._policy_state(policy) if policy is not None else None
        if state is not None and state.rate_limiter is not None:
            now = self._now()
            if not state.rate_limiter.try_take(now):
                self.metrics.shed.labels(backend.key, "rate_limited").inc()
                raise RateLimited(headers=state.rate_limiter.ratelimit_headers(now))
        cached = self._timeouts.get(id(rule))
        if cached is not None and cached[0] is rule:
            timeouts = cached[1]
        else:
            timeouts = resolve_timeouts(
                rule.effective_request_timeout,
                policy.request_timeout if policy is not None else None,
                connect=self.options.connect_timeout,
            )
            self._timeouts[id(rule)] = (rule, timeouts)
        breaker = self.breakers.get(backend.key, policy.circuit_breaker if policy else None)
        deadline = None if timeouts.total is None else started + timeouts.total
        # GCPBackendPolicy timeoutSec bounds the backend request too; the shorter limit wins.
        timed_by = self.steering.backend_timeout(snap, backend, timeouts.total)
        if timed_by is not None and timed_by.timeout is not None:
            deadline = started + timed_by.timeout
        try:
            async with _deadline_scope(deadline):
                ticket = await breaker.acquire()
        except CircuitOverflow as e:
            self.metrics.overflows.labels(backend.key, e.reason).inc()
            raise
        except TimeoutError:
            # Waited as pending until the route timeout: Envoy answers 504 as well.
            raise _timeout_error(timed_by) from None
        tickets = [ticket]
        try:
            await self._forward(request, snap, backend, breaker, tickets, candidates, pick,
                                path, headers, body, state.retry if state else None,
                                deadline, rec, started, ttfb, timed_by, transform)
        finally:
            tickets[-1].release()

    async def _forward(self, request: DownstreamRequest, snap: Snapshot, backend: Backend,
                       breaker: CircuitBreaker, tickets: list[Ticket],
                       candidates: tuple[str, ...], pick: _PoolPick | None, path: str,
                       headers: list[tuple[str, str]], body: bytes, retry: RetryPolicy | None,
                       deadline: float | None, rec: dict[str, Any], started: float,
                       ttfb: list[float],
                       timed_by: BackendPolicySpec | None = None,
                       transform: Callable[[bytes], bytes] | None = None) -> None:
        """Send to an endpoint, retrying before the first response byte as the policy allows.

        `tickets[-1]` is the breaker slot of the current attempt; a retry gives it back and takes a
        retry slot (Envoy's `maxParallelRetries`); a retry that overflows answers the last failure.
        """
        session = self.session
        assert session is not None, "gateway not started"
        loop = self._loop or asyncio.get_running_loop()
        tried: list[str] = []
        attempt = 0
        store = self.store
        # A stream's response head comes with its first token: until then the server is still
        # queueing or prefilling it, which the picker reads (prefix affinity's prefill bound).
        streamed = pick is not None and pick.request.stream
        while True:
            address = self._pick(candidates, tried, pick, loop.time())
            tried.append(address)
            rec["endpoint"] = address
            rec["attempts"] = attempt + 1
            store.begin(address, streamed)
            unanswered = streamed
            upstream: UpstreamResponse | None = None
            outcome: RelayOutcome | None = None
            outlier = pick.outlier if pick is not None else None
            try:
                try:
                    async with _deadline_scope(deadline):
                        upstream = await session.request(address, request.method, path,
                                                         headers, body)
                except TimeoutError:
                    self.metrics.upstream_errors.labels(backend.key, "timeout").inc()
                    self.steering.record(outlier, backend, address, FailureKind.TIMEOUT)
                    raise _timeout_error(timed_by) from None
                except UpstreamFailure as f:
                    self.metrics.upstream_errors.labels(backend.key, f.reason).inc()
                    self.steering.record(outlier, backend, address, _failure_kind(f.reason))
                    rec["error"] = str(f)
                    if (retry is not None
                            and retry.should_retry(attempt, AttemptOutcome(failure=f.reason))
                            and await self._retry_slot(breaker, tickets, backend)):
                        await self._backoff(retry, attempt, deadline, loop)
                        attempt += 1
                        continue
                    if f.reason == "connection failure":
                        raise UpstreamConnectError(retried=attempt > 0) from None
                    raise UpstreamReset(retried=attempt > 0) from None
                if unanswered:
                    store.answered(address)
                    unanswered = False
                ttfb[:] = [loop.time() - started]
                self.steering.record(outlier, backend, address, upstream.status)
                if (retry is not None
                        and retry.should_retry(attempt, AttemptOutcome(status=upstream.status))):
                    self.metrics.upstream_errors.labels(
                        backend.key, f"status_{upstream.status}").inc()
                    # When the breaker refuses the retry, this response goes to the client as is.
                    if await self._retry_slot(breaker, tickets, backend):
                        upstream.close()
                        upstream = None
                        await self._backoff(retry, attempt, deadline, loop)
                        attempt += 1
                        continue
                extra = ([("x-envoy-upstream-service-time", str(int(ttfb[0] * 1000)))]
                         if snap.envoy_headers else None)
                if timed_by is not None and deadline is not None and is_event_stream(upstream):
                    outcome, cut = await relay_sse_until(
                        request, upstream, deadline,
                        error_frame(_timeout_error(timed_by).message), extra)
                    rec["status"] = outcome.status
                    rec["bytes"] = outcome.bytes_sent
                    if cut:
                        rec["flag"] = "UT"  # ended with an SSE error frame, not a reset
                    elif not outcome.completed:
                        rec["flag"] = "UPE"
                        request.abort()
                    return
                try:
                    async with _deadline_scope(deadline):
                        outcome = await relay_response(request, upstream, extra, transform)
                except TimeoutError:
                    # The route timeout fired while the body was read or relayed: a 504 when
                    # nothing was sent yet, else the client sees the connection close.
                    rec["flag"] = "UT"
                    if request.started:
                        rec["status"] = upstream.status  # and the connection is dropped
                    raise UpstreamTimeout() from None
                except UpstreamFailure as f:
                    raise UpstreamReset(str(f)) from None
                rec["status"] = outcome.status
                rec["bytes"] = outcome.bytes_sent
                if not outcome.completed:
                    rec["flag"] = "UPE"  # the upstream reset mid-body
                    request.abort()
                return
            finally:
                store.end(address, unanswered)
                if upstream is not None:
                    if outcome is not None and outcome.completed:
                        upstream.release()
                    else:
                        # Unfinished body (client gone, timeout, error): close the connection so
                        # the model server sees the disconnect and frees the request's slot.
                        upstream.close()

    async def _retry_slot(self, breaker: CircuitBreaker, tickets: list[Ticket],
                          backend: Backend) -> bool:
        """Trade the failed attempt's breaker slot for a retry slot; False when the breaker
        refuses the retry (`maxParallelRetries`), in which case the attempt's slot is kept."""
        decision = breaker.try_acquire(retry=True)
        if isinstance(decision, Overflow):
            self.metrics.overflows.labels(backend.key, decision.reason).inc()
            return False
        tickets[-1].release()
        if isinstance(decision, Admitted):
            tickets.append(decision.ticket)
        else:
            tickets.append(await wait_for_admission(decision.waiter))
        self.metrics.retries.labels(backend.key).inc()
        return True

    async def _backoff(self, retry: RetryPolicy, attempt: int, deadline: float | None,
                       loop: asyncio.AbstractEventLoop) -> None:
        delay = retry.backoff(attempt, self.rnd)
        if deadline is not None:
            delay = min(delay, max(0.0, deadline - loop.time()))
        await asyncio.sleep(delay)

    def _pick(self, candidates: tuple[str, ...], tried: list[str], pick: _PoolPick | None,
              now: float) -> str:
        """The endpoint for this attempt: the pool's picker over the endpoints not tried yet for
        this request (all of them when every one was tried)."""
        if pick is not None and pick.steering is not None:
            candidates = self.steering.narrow(pick.steering, candidates, now)
        if len(candidates) == 1:
            return candidates[0]
        if tried:
            candidates = tuple(c for c in candidates if c not in tried) or candidates
        if pick is None:
            return self.rnd.choice(candidates)
        address = pick.scheduler.pick(pick.request, candidates, now).address
        pick.scheduler.on_picked(pick.request, address)
        return address


@dataclass(slots=True)
class _PoolPick:
    """What the endpoint picker needs for one request to an InferencePool."""

    scheduler: Scheduler
    request: LLMRequest
    # Set when health, ejection or a GCPBackendPolicy narrows the endpoints before each pick.
    steering: BackendSteering | None = None

    @property
    def outlier(self) -> OutlierState | None:
        return self.steering.outlier if self.steering is not None else None


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


def _timeout_error(timed_by: BackendPolicySpec | None) -> UpstreamTimeout:
    """504 for the timeout that fired: the GCPBackendPolicy's (with details) or the route's."""
    if timed_by is not None and timed_by.timeout is not None:
        return BackendTimeout(timed_by.key, timed_by.timeout)
    return UpstreamTimeout()

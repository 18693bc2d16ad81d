"""The router's HTTP surface: /healthz, /readyz, /infer, /metrics on one aiohttp app."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from poolgate._aio import cancel_and_wait
from poolgate.auth.credentials import BEARER
from poolgate.router.backend import Backend
from poolgate.router.body import InferRequest, parse_infer_body, read_body
from poolgate.router.config import RouterConfig
from poolgate.router.errors import (
    ClientDisconnected,
    Overloaded,
    RouterError,
    Unauthenticated,
    Unavailable,
    error_response,
)
from poolgate.router.global_limit import GlobalLimit, GlobalLimitReached
from poolgate.router.metrics import RouterMetrics
from poolgate.state.interfaces import KVUnavailable, LeaseStore
from poolgate.traffic.concurrency import (
    ConcurrencyLimiter,
    ConcurrencyPolicy,
    ConcurrencyRejected,
    Overflow,
    QueueTimeout,
)

log = logging.getLogger("poolgate.router")

# Seconds a client told 429 should wait before retrying.
RETRY_AFTER_S = 1

INFER_PATH = "/infer"


class Router:
    """The state behind the handlers: limits, the optional backend and global limit, metrics."""

    def __init__(self, config: RouterConfig, metrics: RouterMetrics,
                 global_limit: GlobalLimit | None, backend: Backend | None) -> None:
        self.config = config
        self.metrics = metrics
        self.limiter = ConcurrencyLimiter(
            ConcurrencyPolicy(config.max_concurrency, config.overflow, config.max_queue))
        self.global_limit = global_limit
        self.backend = backend
        self.processing = 0
        self.peak = 0
        self.queued = 0
        self.draining = False
        # Tasks answering a request now (any path): what a stop waits for, then cancels.
        self.in_progress: set[asyncio.Task[Any]] = set()

    def readiness(self) -> tuple[bool, str]:
        """(ready, reason) for /readyz."""
        if self.draining:
            return False, "shutting down"
        if self.backend is not None and not self.backend.healthy:
            return False, self.backend.reason
        return True, "ready"

    async def infer(self, req: InferRequest) -> dict[str, Any]:
        """Admit (local slot, then global lease), process, and build the seed-003 response."""
        loop = asyncio.get_running_loop()
        arrived = loop.time()
        wait = self.config.overflow is Overflow.QUEUE
        timeout_s = self.config.queue_timeout_ms / 1000
        deadline = arrived + timeout_s if wait else None
        self._queued(+1)
        try:
            await self.limiter.acquire(timeout_s)
        except ConcurrencyRejected as exc:
            raise self._reject(Overloaded, exc.reason,
                               f"router at MAX_CONCURRENCY={self.config.max_concurrency}"
                               + (f" with MAX_QUEUE={self.config.max_queue} waiting"
                                  if exc.reason == "queue_full" else "")) from None
        except QueueTimeout:
            raise self._reject(Unavailable, "queue_timeout",
                               f"no slot within QUEUE_TIMEOUT_MS={self.config.queue_timeout_ms}"
                               ) from None
        finally:
            self._queued(-1)
        try:
            lease_id = await self._global_lease(deadline)
            try:
                self.metrics.queue_wait.observe(loop.time() - arrived)
                return await self._process(req)
            finally:
                if lease_id is not None and self.global_limit is not None:
                    await self.global_limit.release(lease_id)
        finally:
            self.limiter.release()
            self.metrics.duration.observe(loop.time() - arrived)

    async def _global_lease(self, deadline: float | None) -> str | None:
        if self.global_limit is None:
            return None
        self._queued(+1)
        try:
            return await self.global_limit.acquire(deadline)
        except GlobalLimitReached as exc:
            if deadline is None:
                raise self._reject(Overloaded, "global_limit", str(exc)) from None
            raise self._reject(Unavailable, "queue_timeout",
                               f"{exc} for QUEUE_TIMEOUT_MS={self.config.queue_timeout_ms}"
                               ) from None
        except KVUnavailable as exc:
            raise self._reject(Unavailable, "kv_unavailable",
                               f"KV store unreachable and KV_FAILURE_MODE=closed: {exc}") from None
        finally:
            self._queued(-1)

    async def _process(self, req: InferRequest) -> dict[str, Any]:
        self.processing += 1
        self.peak = max(self.peak, self.processing)
        self.metrics.in_flight.set(self.processing)
        self.metrics.in_flight_peak.set(self.peak)
        try:
            started = time.perf_counter()
            extra: dict[str, Any] = {}
            if self.backend is None:
                await asyncio.sleep(self.config.simulated_latency_ms / 1000)
            else:
                completion = await self.backend.complete(req.prompt, req.max_tokens)
                extra = {"completion": completion.text, "finishReason": completion.finish_reason,
                         "usage": completion.usage}
            processing_ms = round((time.perf_counter() - started) * 1000)
        finally:
            self.processing -= 1
            self.metrics.in_flight.set(self.processing)
        return {
            "modelRef": self.config.model_ref,
            "prompt": req.prompt,
            "routerPod": self.config.router_pod,
            "kvEndpoints": [str(ep) for ep in self.config.kv_endpoints],
            "processingMs": processing_ms,
            **extra,
        }

    def authenticate(self, headers: Mapping[str, str]) -> str | None:
        """The client id of the request's API key (`Authorization: Bearer KEY`, else `x-api-key:
        KEY`), None when no key file is configured; raises `Unauthenticated` (401)."""
        table = self.config.api_keys
        if table is None:
            return None
        key = headers.get("authorization", "")
        if key.startswith(BEARER):
            key = key[len(BEARER):]
        key = key or headers.get("x-api-key", "")
        client = table.client_for(key)
        if client is None:
            reason = "invalid_api_key" if key else "missing_api_key"
            self.metrics.rejected.labels(reason).inc()
            raise Unauthenticated(
                "invalid API key" if key else
                "missing API key: send Authorization: Bearer KEY (or x-api-key: KEY)",
                reason=reason, headers={"WWW-Authenticate": 'Bearer realm="poolgate-router"'})
        return client

    def _queued(self, delta: int) -> None:
        self.queued += delta
        self.metrics.queued.set(self.queued)

    def _reject(self, kind: type[RouterError], reason: str, message: str) -> RouterError:
        self.metrics.rejected.labels(reason).inc()
        headers = {"Retry-After": str(RETRY_AFTER_S)} if kind is Overloaded else None
        return kind(message, reason=reason, headers=headers)


ROUTER = web.AppKey("router", Router)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def track_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Keep each request's task in `Router.in_progress` while it runs (see main.drain)."""
    in_progress = request.app[ROUTER].in_progress
    task = asyncio.current_task()
    assert task is not None  # a handler always runs in a task
    in_progress.add(task)
    try:
        return await handler(request)
    finally:
        in_progress.discard(task)


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Render every error in the OpenAI shape, never a traceback; count every /infer answer."""
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        raise
    except ClientDisconnected as exc:
        log.info("client %s %s: %s %s not answered", request.remote, exc, request.method,
                 request.path)
        # Nobody will read this (aiohttp drops a response to a closed connection quietly), and
        # an unanswered request is not counted.
        return error_response(400, f"client {exc}")
    except RouterError as exc:
        response = exc.to_response()
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        response = error_response(exc.status, _http_error_message(request, exc),
                                  headers=_allow_header(exc))
    except Exception:
        log.exception("unexpected error on %s %s", request.method, request.path)
        response = error_response(500, "internal error in the router (see its log)")
    if request.path == INFER_PATH:
        request.app[ROUTER].metrics.requests.labels(str(response.status)).inc()
    return response


def _http_error_message(request: web.Request, exc: web.HTTPException) -> str:
    """aiohttp's routing errors as a sentence that says what the router does serve."""
    if exc.status == 404:
        return (f"{request.method} {request.path} is not served here: the router answers "
                f"POST {INFER_PATH}, GET /healthz, /readyz and /metrics")
    allow = exc.headers.get("Allow")
    if exc.status == 405 and allow:
        return f"{request.method} is not allowed on {request.path}; use {allow}"
    return exc.reason


def _allow_header(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the process serves HTTP."""
    return web.json_response({"status": "ok"}, dumps=_dumps)


async def readyz(request: web.Request) -> web.Response:
    """Readiness: configuration valid and, when forwarding, the backend healthy."""
    router = request.app[ROUTER]
    ready, reason = router.readiness()
    body: dict[str, Any] = {"status": "ready" if ready else "not ready", "reason": reason,
                            "modelRef": router.config.model_ref}
    if router.global_limit is not None:
        body["kv"] = "reachable" if router.global_limit.reachable else "unreachable"
    return web.json_response(body, status=200 if ready else 503, dumps=_dumps)


async def infer(request: web.Request) -> web.Response:
    """POST /infer {"prompt": ...} -> {modelRef, prompt, routerPod, kvEndpoints, processingMs}."""
    router = request.app[ROUTER]
    router.authenticate(request.headers)  # before the body is read, as a gateway would
    req = parse_infer_body(await read_body(request, router.config.max_body_bytes))
    body = await router.infer(req)
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def metrics(request: web.Request) -> web.Response:
    """Prometheus exposition of the router's own registry."""
    payload = generate_latest(request.app[ROUTER].metrics.registry)
    return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _dumps(obj: Any) -> str:
    return orjson.dumps(obj).decode()


async def _backend_health_loop(backend: Backend, interval_s: float, metrics: RouterMetrics) -> None:
    while True:
        await backend.check()
        metrics.backend_healthy.set(1 if backend.healthy else 0)
        await asyncio.sleep(interval_s)


def build_app(config: RouterConfig, store_factory: Callable[[], LeaseStore] | None = None) -> web.Application:
    """The aiohttp application; background tasks start and stop with it.

    `store_factory` builds the lease store when GLOBAL_MAX_CONCURRENCY is set.
    """
    app = web.Application(middlewares=[track_middleware, errors_middleware],
                          client_max_size=config.max_body_bytes)
    metrics_ = RouterMetrics()
    router = Router(config, metrics_, None, None)
    app[ROUTER] = router

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[None]] = []
        session: aiohttp.ClientSession | None = None
        if config.global_max_concurrency is not None and store_factory is not None:
            router.global_limit = GlobalLimit(
                store_factory(), config.kv_key, config.global_max_concurrency, config.kv_lease_ms,
                config.kv_failure_mode, metrics_, config.router_pod or "router")
            tasks.append(asyncio.create_task(router.global_limit.renew_forever()))
        if config.backend_url is not None:
            session = aiohttp.ClientSession()
            router.backend = Backend(config.backend_url, config.model_ref,
                                     config.backend_timeout_ms / 1000, session)
            tasks.append(asyncio.create_task(_backend_health_loop(
                router.backend, config.backend_health_interval_ms / 1000, metrics_)))
        yield
        await cancel_and_wait(tasks)
        if router.global_limit is not None:
            await router.global_limit.aclose()
        if session is not None:
            await session.close()

    async def start_draining(app: web.Application) -> None:
        router.draining = True

    app.cleanup_ctx.append(lifecycle)
    app.on_shutdown.append(start_draining)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_post(INFER_PATH, infer)
    app.router.add_get("/metrics", metrics)
    return app

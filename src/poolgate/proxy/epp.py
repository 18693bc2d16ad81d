"""`poolgate epp`: the gateway's picker served to Envoy over gRPC ext_proc.

`EndpointPicker` runs the gateway's own stages on each request Envoy hands over (route, the
InferenceModel/Objective resolution and rewrite, shedding, the pool's scheduler profile), with
the same datalayer (scrapes, health) `poolgate serve` keeps; Envoy then does the proxying,
circuit breaking, retries and rate limits. `ExtProcFront` is the gRPC server
(`envoy.service.ext_proc.v3.ExternalProcessor` and gRPC health: `liveness`, `readiness`, the
ExternalProcessor service), in the place the HTTP listeners have in `poolgate serve`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from poolgate.config.choice import choose_backend
from poolgate.config.snapshot import Snapshot
from poolgate.core.epp_protocol import BACKEND_REF_METADATA
from poolgate.proxy.context import RequestContext
from poolgate.proxy.errors import InvalidBackend, NoRoute
from poolgate.proxy.extproc import Exchange, ExtProcRequest, Held, Pick
from poolgate.proxy.gateway import Gateway
from poolgate.proxy.listeners import ListenError, bind_error

log = logging.getLogger("poolgate.epp")

EXT_PROC_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
LIVENESS = "liveness"
READINESS = "readiness"


class EndpointPicker:
    """The `extproc.Picker` of a gateway: see the module docstring."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    @property
    def max_body(self) -> int:
        return self.gateway.options.max_body_bytes

    def context(self, request: ExtProcRequest) -> RequestContext:
        gateway = self.gateway
        return RequestContext(request, 0, gateway.now(), gateway.runtime)

    def decide(self, ctx: RequestContext, subset: frozenset[str] | None,
               backend_key: str | None) -> Pick:
        gateway = self.gateway
        self._resolve(ctx, backend_key)
        gateway.inspect(ctx)
        gateway.shed(ctx)
        cluster = ctx.cluster
        assert cluster is not None
        tried: list[str] = []
        primary = gateway.pick(ctx, cluster, tried, subset)
        tried.append(primary)
        # With retries configured, Envoy goes down the list: the next picks, each excluding
        # the endpoints before it.
        retries = cluster.retry.num_retries if cluster.retry is not None else 0
        pool = cluster.pool
        while len(tried) <= retries and pool is not None and len(tried) < len(pool.addresses):
            fallback = gateway.pick(ctx, cluster, tried, subset)
            if fallback in tried:
                break
            tried.append(fallback)
        streamed = ctx.llm is not None and ctx.llm.stream
        gateway.store.begin(primary, streamed)
        inference = ctx.inference
        changed = inference is not None and inference.body is not ctx.request.body
        return Pick(tuple(tried), ctx.body if changed else None, Held(primary, streamed, streamed))

    def _resolve(self, ctx: RequestContext, backend_key: str | None) -> None:
        """The route rule (the first listener whose table matches) and its InferencePool: the
        backendRef Envoy routed to when it says (`backend_key`), else the rule's own choice."""
        request, snap = ctx.request, ctx.runtime.snapshot
        decision = None
        for port in snap.tables:
            decision = snap.route(port, request.host, request.method, request.path,
                                  request.headers, request.query)
            if decision is not None:
                break
        if decision is None:
            raise NoRoute(f"No route matches {request.method} {request.host}{request.path}.")
        ctx.route = decision
        self.gateway.metrics.route_series(decision.route.key).in_flight += 1
        chosen = ctx.runtime.clusters.get(backend_key) if backend_key else None
        backend = chosen.backend if chosen is not None \
            else choose_backend(decision.rule, self.gateway.rnd)
        if backend.error is not None:
            raise InvalidBackend(f"The route's backend {backend.kind}/{backend.name} is invalid: "
                                 f"{backend.error}")
        if backend.pool is None:
            raise InvalidBackend(f"The route's backend {backend.kind}/{backend.name} is not an "
                                 "InferencePool: the endpoint picker picks only pool endpoints.")
        ctx.backend = backend
        ctx.cluster = ctx.runtime.clusters[backend.key]
        ctx.path = request.raw_path

    def served(self, ctx: RequestContext, held: Held, endpoint: str, status: int) -> None:
        store = self.gateway.store
        if endpoint != held.endpoint:
            # A fallback served: move the in-flight count to it.
            store.end(held.endpoint, held.awaiting)
            held.endpoint = endpoint
            store.begin(endpoint, held.awaiting)
        if held.awaiting:
            store.answered(endpoint)
            held.awaiting = False
        cluster = ctx.cluster
        if cluster is None:
            return
        if status < 500 and ctx.llm is not None and cluster.picker is not None:
            cluster.picker.scheduler.on_picked(ctx.llm, endpoint)
        if cluster.outlier is not None:  # the route's passive health check
            self.gateway.steering.record(cluster, endpoint, status, self.gateway.now())

    def finish(self, ctx: RequestContext, held: Held | None) -> None:
        if held is not None:
            self.gateway.store.end(held.endpoint, held.awaiting)
        self.gateway.finish(ctx)


class _Servicer(pb_grpc.ExternalProcessorServicer):  # type: ignore[misc]
    """One `Exchange` per stream."""

    def __init__(self, picker: EndpointPicker) -> None:
        self._picker = picker

    async def Process(self, requests: AsyncIterator[pb.ProcessingRequest],
                      context: grpc.aio.ServicerContext[Any, Any],
                      ) -> AsyncIterator[pb.ProcessingResponse]:
        metadata = dict(context.invocation_metadata() or ())
        backend_key = metadata.get(BACKEND_REF_METADATA)
        exchange = Exchange(self._picker, backend_key=backend_key
                            if isinstance(backend_key, str) else None)
        gateway = self._picker.gateway
        gateway.active_requests += 1  # what the drain waits for
        try:
            async for message in requests:
                for response in exchange.on_message(message):
                    yield response
        finally:
            gateway.active_requests -= 1
            exchange.close()


class ExtProcFront:
    """The gRPC server on `host:port` (ext_proc + health), with the `Listeners` interface the
    gateway process composes (`sync`, `stop_accepting`, `close`, `bound_ports`)."""

    def __init__(self, picker: EndpointPicker, *, host: str, port: int) -> None:
        self._picker = picker
        self._host = host
        self._port = port
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._bound: dict[int, int] = {}

    @property
    def bound_ports(self) -> dict[int, int]:
        """{gRPC port asked for: port bound} once serving."""
        return dict(self._bound)

    async def sync(self, snapshot: Snapshot) -> None:
        """Start serving on the first call (the port does not follow the manifests); readiness
        follows whether the snapshot has a pool with endpoints."""
        if self._server is None:
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            pb_grpc.add_ExternalProcessorServicer_to_server(_Servicer(self._picker), server)
            health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
            address = f"[{self._host}]:{self._port}" if ":" in self._host \
                else f"{self._host}:{self._port}"
            try:
                bound = server.add_insecure_port(address)
            except RuntimeError as e:
                error = bind_error(self._host, self._port) or OSError(str(e))
                raise ListenError(self._host, self._port, error) from None
            if bound == 0:
                raise ListenError(self._host, self._port,
                                  OSError(98, "the address is already in use"))
            await server.start()
            self._server = server
            self._bound = {self._port: bound}
            await self._health.set(LIVENESS, health_pb2.HealthCheckResponse.SERVING)
        ready = any(pool.endpoints for pool in snapshot.pools.values())
        status = (health_pb2.HealthCheckResponse.SERVING if ready
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for service in (READINESS, EXT_PROC_SERVICE, ""):
            await self._health.set(service, status)

    def stop_accepting(self) -> None:
        """Draining: readiness goes NOT_SERVING so Envoy's health checks move away; streams
        already open finish."""
        asyncio.get_running_loop().create_task(self._not_ready())

    async def _not_ready(self) -> None:
        for service in (READINESS, EXT_PROC_SERVICE, ""):
            await self._health.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    async def close(self) -> None:
        """Stop the server (open streams are cancelled: the drain already waited for them)."""
        if self._server is not None:
            await self._health.enter_graceful_shutdown()
            await self._server.stop(grace=None)
            self._server = None

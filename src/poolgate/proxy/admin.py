"""The admin listener: `/metrics`, `/healthz`, `/readyz` and `/status` (views in `status.py`)."""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from poolgate.datalayer.health_checker import ActiveHealthChecker
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.gateway import Gateway
from poolgate.proxy.listeners import Front, ListenError
from poolgate.proxy.status import gateway_status, not_ready_reason


class AdminServer:
    """Serves the gateway's metrics, liveness, readiness and status on `host:port`.

    Reads `gateway` and `metrics`, the open `listeners` and the `health_checker`'s targets;
    `staleness`: metrics older than this many seconds are shown as not fresh."""

    def __init__(self, host: str, port: int, *, gateway: Gateway, metrics: GatewayMetrics,
                 listeners: Front, health_checker: ActiveHealthChecker,
                 staleness: float) -> None:
        self._host = host
        self._port = port
        self._gateway = gateway
        self._metrics = metrics
        self._listeners = listeners
        self._health_checker = health_checker
        self._staleness = staleness
        self._runner: web.AppRunner | None = None
        self._draining = False

    async def start(self) -> None:
        """Listen; raise `ListenError` when the port cannot be bound."""
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._runner = runner
        try:
            await web.TCPSite(runner, self._host, self._port).start()
        except OSError as e:
            raise ListenError(self._host, self._port, e) from None

    def mark_draining(self) -> None:
        """The gateway is stopping: `/readyz` says "draining" from now on."""
        self._draining = True

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def not_ready_reason(self) -> str | None:
        """Why the gateway cannot serve yet, or None when at least one route has a backend."""
        return not_ready_reason(self._gateway, draining=self._draining,
                                bound_ports=self._listeners.bound_ports,
                                health_targets=self._health_checker.targets.keys())

    async def _serve_metrics(self, _: web.Request) -> web.Response:
        body, ctype = self._metrics.exposition()
        resp = web.Response(body=body)
        resp.headers["Content-Type"] = ctype
        return resp

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, _: web.Request) -> web.Response:
        reason = self.not_ready_reason()
        if reason is None:
            return web.Response(text="ready\n")
        return web.Response(status=503, text=f"not ready: {reason}\n")

    async def _status(self, _: web.Request) -> web.Response:
        status = gateway_status(self._gateway, bound_ports=self._listeners.bound_ports,
                                staleness=self._staleness,
                                now=asyncio.get_running_loop().time())
        return web.Response(body=orjson.dumps(status, option=orjson.OPT_INDENT_2),
                            content_type="application/json")

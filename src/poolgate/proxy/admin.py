"""The admin listener: `/metrics`, `/healthz`, `/readyz`, `/status` (views in `status.py`), and
the live status page: `/` with its assets under `/static/` and the `/api/live` document it
polls (view in `live_view.py`)."""

from __future__ import annotations

import asyncio
from importlib import resources

import orjson
from aiohttp import web

from poolgate.datalayer.health_checker import ActiveHealthChecker
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.gateway import Gateway
from poolgate.proxy.listeners import Front, ListenError
from poolgate.proxy.live_view import live_document
from poolgate.proxy.status import gateway_status, not_ready_reason

# The status page's files (package data in poolgate/observability/page/), by URL name.
PAGE_ASSETS = {"index.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
# Everything the page loads comes from the admin listener itself; nothing inline, no CDN.
PAGE_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "connect-src 'self'; img-src 'self' data:; base-uri 'none'; "
                               "form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def page_asset(name: str) -> bytes:
    """One of the status page's files (`PAGE_ASSETS`), read from the package."""
    return resources.files("poolgate.observability").joinpath("page", name).read_bytes()


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
        self._assets = {name: page_asset(name) for name in PAGE_ASSETS}

    async def start(self) -> None:
        """Listen; raise `ListenError` when the port cannot be bound."""
        app = web.Application()
        app.router.add_get("/metrics", self._serve_metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        app.router.add_get("/", self._page)
        app.router.add_get("/static/{name}", self._static)
        app.router.add_get("/api/live", self._live)
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

    async def _page(self, _: web.Request) -> web.Response:
        return self._asset("index.html")

    async def _static(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in PAGE_ASSETS or name == "index.html":
            raise web.HTTPNotFound()
        return self._asset(name)

    def _asset(self, name: str) -> web.Response:
        resp = web.Response(body=self._assets[name], content_type=PAGE_ASSETS[name],
                            charset="utf-8")
        resp.headers.update(PAGE_SECURITY_HEADERS)
        return resp

    async def _live(self, request: web.Request) -> web.Response:
        """The live document; `?seconds=N` keeps the last N seconds of traffic (default all)."""
        try:
            seconds = int(request.query.get("seconds", "0"))
        except ValueError:
            raise web.HTTPBadRequest(text="seconds must be an integer\n") from None
        doc = live_document(self._gateway, bound_ports=self._listeners.bound_ports,
                            staleness=self._staleness, now=asyncio.get_running_loop().time(),
                            not_ready=self.not_ready_reason(),
                            seconds=seconds if seconds > 0 else None)
        resp = web.Response(body=orjson.dumps(doc), content_type="application/json")
        resp.headers["Cache-Control"] = "no-store"
        return resp

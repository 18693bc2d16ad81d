"""The gateway process: listeners from the Gateway resources, the admin listener, hot reload."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from poolgate._aio import cancel_and_wait
from poolgate.config.build import PROFILE_NAMES, load_snapshot
from poolgate.config.snapshot import Snapshot
from poolgate.datalayer import MetricsScraper
from poolgate.datalayer.health_checker import ActiveHealthChecker, targets_for
from poolgate.discovery.kubernetes import PodCache, PodWatcher
from poolgate.discovery.source import EndpointSource
from poolgate.http.server import DownstreamRequest, HttpServer
from poolgate.kube import KubeClient, in_cluster_credentials, kubeconfig_credentials
from poolgate.observability.access_log import AccessLog
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.gateway import Gateway, GatewayOptions

log = logging.getLogger("poolgate.server")

# Pod discovery: how long start-up waits for the first pod lists, and how long a burst of pod
# changes is gathered before the snapshot is rebuilt.
_FIRST_LIST_WAIT = 10.0
_POD_CHANGE_DEBOUNCE = 0.1


def pool_namespaces(snapshot: Snapshot) -> set[str]:
    """The namespaces of the snapshot's InferencePools (where their pods are looked for)."""
    return {pool.namespace for pool in snapshot.pools.values()}


class ListenError(Exception):
    """A listener could not bind; the message says which address and why, in plain words."""

    def __init__(self, host: str, port: int, error: OSError) -> None:
        what = f"{host}:{port}"
        if error.errno == errno.EACCES:
            text = f"cannot listen on {what}: permission denied (ports below 1024 need root; use --port)"
        elif error.errno == errno.EADDRINUSE:
            text = f"cannot listen on {what}: the address is already in use"
        else:
            text = f"cannot listen on {what}: {error.strerror or error}"
        super().__init__(text)


class ConfigError(Exception):
    """The manifests could not be loaded; `problems` are printable lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass
class ServeOptions:
    """Command-line settings of `poolgate serve`."""

    paths: list[Path]
    host: str = "0.0.0.0"
    port: int | None = None  # replaces the Gateway's HTTP listener port
    port_map: dict[int, int] = field(default_factory=dict)  # declared port -> bound port
    admin_host: str = "127.0.0.1"
    admin_port: int = 9901
    access_log: str = "-"
    watch: bool = True
    drain_seconds: float = 30.0
    scrape_interval: float = 0.05
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    # "local": endpoints from LocalEndpoints only; "kubernetes": also the Ready pods each
    # InferencePool selects, watched through the API (in-cluster, or `kubeconfig`).
    discovery: str = "local"
    kubeconfig: Path | None = None

    @property
    def profile_names(self) -> frozenset[str]:
        """Scheduler profiles a pool's annotation may name: built-in and --scheduler-config."""
        return PROFILE_NAMES | frozenset(self.gateway.custom_profiles)


def load(paths: Sequence[Path], profiles: Collection[str] = PROFILE_NAMES,
         cluster: EndpointSource | None = None, warn: bool = True) -> Snapshot:
    """Load and resolve the manifests; raise `ConfigError` listing every error. `profiles`:
    the scheduler profile names pools may ask for; `cluster`: discovered endpoints (pods);
    `warn`: log the warnings (off for a load that is redone as soon as the pods are known)."""
    result = load_snapshot(paths, profiles=profiles, cluster=cluster)
    for p in result.problems:
        if warn and p.severity == "warning":
            log.warning("%s", p)
    errors = [str(p) for p in result.problems if p.severity == "error"]
    if errors or result.snapshot is None:
        raise ConfigError(errors or ["the configuration could not be resolved"])
    return result.snapshot


class GatewayServer:
    """Owns the listeners, the admin endpoints and the reload loop around one `Gateway`."""

    def __init__(self, options: ServeOptions, snapshot: Snapshot,
                 pods: PodCache | None = None) -> None:
        self.options = options
        # With --discovery kubernetes: the pods seen so far (the caller's first load used it).
        self.pods = pods
        self._pod_watcher: PodWatcher | None = None
        self._kube_session: aiohttp.ClientSession | None = None
        self._pods_task: asyncio.Task[None] | None = None
        self._pods_dirty = False
        self._reload_lock = asyncio.Lock()
        self.metrics = GatewayMetrics()
        self.gateway = Gateway(snapshot, options.gateway, self.metrics,
                               AccessLog.open(options.access_log))
        self._listeners: dict[int, tuple[HttpServer, int]] = {}
        self._admin: web.AppRunner | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self.scraper = MetricsScraper(self.gateway.store, interval=options.scrape_interval,
                                      staleness=options.gateway.staleness,
                                      seed=options.gateway.seed)
        self.health_checker = ActiveHealthChecker(self.gateway.health, seed=options.gateway.seed)
        self.health_checker.set_targets(targets_for(snapshot.pools, snapshot.health_checks))
        self._stopping = False
        self.on_reload: list[Callable[[Snapshot], None]] = []
        self._record_pools(snapshot)

    # -- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> None:
        self.scraper.set_endpoints(self.gateway.pool_addresses())
        self.scraper.start()
        self.health_checker.start()
        await self._sync_listeners(self.gateway.snapshot)
        await self._start_admin()
        if self.pods is not None:
            await self._start_pod_discovery(self.pods)
        if self.options.watch:
            self._watch_task = asyncio.create_task(self._watch(), name="config-watch")

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to the drain time), then close."""
        self._stopping = True
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
        if self._pods_task is not None:
            await cancel_and_wait([self._pods_task])
        if self._pod_watcher is not None:
            await self._pod_watcher.close()
        if self._kube_session is not None:
            await self._kube_session.close()
        for listener, _ in self._listeners.values():
            listener.stop_accepting()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.drain_seconds
        while self.gateway.active_requests > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        for listener, _ in self._listeners.values():
            await listener.close()
        self._listeners.clear()
        if self._admin is not None:
            await self._admin.cleanup()
        await self.scraper.close()
        await self.health_checker.close()
        await self.gateway.close()

    @property
    def bound_ports(self) -> dict[int, int]:
        """Declared listener port -> the port actually bound."""
        return {declared: bound for declared, (_, bound) in self._listeners.items()}

    def _bind_port(self, declared: int) -> int:
        if declared in self.options.port_map:
            return self.options.port_map[declared]
        if self.options.port is not None:
            return self.options.port
        return declared

    async def _sync_listeners(self, snapshot: Snapshot) -> None:
        wanted = sorted({lst.port for lst in snapshot.listeners})
        if self.options.port is not None and len(wanted) > 1 and not self.options.port_map:
            raise ConfigError([
                f"--port replaces a single listener port, but the Gateways declare ports "
                f"{', '.join(map(str, wanted))}; use --port-map DECLARED=BOUND for each."
            ])
        for declared in list(self._listeners):
            if declared not in wanted:
                listener, _ = self._listeners.pop(declared)
                await listener.close()
                log.info("listener on declared port %d removed", declared)
        for declared in wanted:
            if declared in self._listeners:
                continue
            bound = self._bind_port(declared)
            listener = HttpServer(self._handler_for(declared),
                                  max_body=self.options.gateway.max_body_bytes)
            try:
                await listener.start(self.options.host, bound)
            except OSError as e:
                raise ListenError(self.options.host, bound, e) from None
            self._listeners[declared] = (listener, bound)
            log.info("listening on %s:%d (Gateway listener port %d)", self.options.host, bound,
                     declared)

    def _handler_for(self, declared: int) -> Callable[[DownstreamRequest], Awaitable[None]]:
        handle = self.gateway.handle

        def handler(request: DownstreamRequest) -> Awaitable[None]:
            return handle(request, declared)

        return handler

    # -- reload ----------------------------------------------------------------------------------

    async def reload(self, what: str = "configuration") -> bool:
        """Load the manifests again (with the pods seen so far); swap atomically on success,
        keep the old config on failure."""
        async with self._reload_lock:
            return await self._reload(what)

    async def _reload(self, what: str) -> bool:
        pods = self.pods.copy() if self.pods is not None else None
        try:
            snapshot = await asyncio.to_thread(load, self.options.paths,
                                               self.options.profile_names, pods)
            await self._sync_listeners(snapshot)
        except ConfigError as e:
            self.metrics.reloads.labels("rejected").inc()
            log.error("configuration reload rejected; still serving the previous one:\n%s", e)
            return False
        except OSError as e:
            self.metrics.reloads.labels("rejected").inc()
            log.error("configuration reload failed (%s); still serving the previous one", e)
            return False
        self.gateway.swap(snapshot)
        self.scraper.set_endpoints(self.gateway.pool_addresses())
        self.health_checker.set_targets(targets_for(snapshot.pools, snapshot.health_checks))
        self._record_pools(snapshot)
        for callback in self.on_reload:
            callback(snapshot)
        if self._pod_watcher is not None:
            self._pod_watcher.watch_namespaces(pool_namespaces(snapshot))
        self.metrics.reloads.labels("applied").inc()
        log.info("%s reloaded", what)
        return True

    # -- pod discovery ---------------------------------------------------------------------------

    async def _start_pod_discovery(self, pods: PodCache) -> None:
        """Watch the pools' namespaces, wait (bounded) for their first lists, then rebuild."""
        path = self.options.kubeconfig
        credentials = in_cluster_credentials() if path is None else kubeconfig_credentials(path)
        self._kube_session = aiohttp.ClientSession()
        client = KubeClient(credentials, self._kube_session)
        self._pod_watcher = PodWatcher(client, pods, self._pods_changed,
                                       seed=self.options.gateway.seed)
        self._pod_watcher.watch_namespaces(pool_namespaces(self.gateway.snapshot))
        if not await self._pod_watcher.wait_synced(_FIRST_LIST_WAIT):
            log.warning("pod discovery: not every namespace listed within %gs; serving with "
                        "what is known and adding pods as they are seen", _FIRST_LIST_WAIT)
        self._pods_dirty = False
        await self.reload("endpoints (pods)")

    def _pods_changed(self) -> None:
        """A watch changed the endpoints: rebuild soon, once for a burst of changes."""
        self._pods_dirty = True
        if self._stopping or (self._pods_task is not None and not self._pods_task.done()):
            return
        self._pods_task = asyncio.get_running_loop().create_task(
            self._apply_pod_changes(), name="poolgate-pods-reload")

    async def _apply_pod_changes(self) -> None:
        while self._pods_dirty and not self._stopping:
            await asyncio.sleep(_POD_CHANGE_DEBOUNCE)
            self._pods_dirty = False
            await self.reload("endpoints (pods)")

    async def _watch(self) -> None:
        from watchfiles import awatch

        roots = [str(p) for p in self.options.paths]
        async for _ in awatch(*roots, debounce=200, step=50, recursive=True,
                              force_polling=None):
            if self._stopping:
                return
            await self.reload()

    def _record_pools(self, snapshot: Snapshot) -> None:
        for key, pool in snapshot.pools.items():
            self.metrics.endpoints_ready.labels(key).set(len(pool.endpoints))

    # -- admin -----------------------------------------------------------------------------------

    async def _start_admin(self) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/status", self._status)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        self._admin = runner
        try:
            await web.TCPSite(runner, self.options.admin_host, self.options.admin_port).start()
        except OSError as e:
            raise ListenError(self.options.admin_host, self.options.admin_port, e) from None

    async def _metrics(self, _: web.Request) -> web.Response:
        body, ctype = self.metrics.exposition()
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

    def not_ready_reason(self) -> str | None:
        """Why the gateway cannot serve yet, or None when at least one route has a backend."""
        if self._stopping:
            return "draining"
        snap = self.gateway.snapshot
        if not self._listeners:
            return "no listener"
        # Until every pool endpoint has been scraped once (successfully or not) the picker and
        # the saturation check know nothing, and unknown metrics count as saturated.
        store = self.gateway.store
        for address in self.gateway.pool_addresses():
            state = store.get(address)
            if state is None or state.scrapes_ok + state.scrapes_failed == 0:
                return f"waiting for the first metrics scrape of {address}"
        health = self.gateway.health
        for address in self.health_checker.targets:
            if not health.checked(address):
                return f"waiting for the first health check of {address}"
        if snap.has_address_backends():
            return None
        if not any(pool.endpoints for pool in snap.pools.values()):
            return "no InferencePool has an endpoint"
        # Ready while some route can send somewhere: a pool backend with a healthy endpoint.
        pools = [b.pool for r in snap.routes for rule in r.rules for b in rule.backends
                 if b.pool is not None and b.weight > 0]
        if not pools:
            return None  # no route sends to a pool: nothing to judge health by
        for pool in pools:
            if any(health.is_healthy(a) for a in pool.addresses):
                return None
        return "no route has a backend with a healthy endpoint"

    def _endpoint_status(self, address: str, now: float) -> dict[str, Any]:
        store = self.gateway.store
        state = store.get(address)
        signals = store.fresh_signals(address, now, self.options.gateway.staleness)
        out: dict[str, Any] = {"address": address, "in_flight": store.in_flight(address),
                               "awaiting_first_token":
                                   state.awaiting_first_token if state is not None else 0,
                               "metrics_fresh": signals is not None}
        health = self.gateway.health.get(address)
        if health is not None:
            out["healthy"] = health.healthy
            if health.last_error is not None:
                out["last_health_error"] = health.last_error
        if signals is not None:
            out.update(waiting=signals.waiting, running=signals.running,
                       kv_usage=signals.kv_usage, lora_running=sorted(signals.lora_running),
                       lora_waiting=sorted(signals.lora_waiting), max_lora=signals.max_lora)
        if state is not None and state.last_error is not None:
            out["last_scrape_error"] = state.last_error
        return out

    def _placement_status(self, snap: Snapshot, key: str) -> dict[str, Any]:
        """Multi-cluster view of a pool: placement of each endpoint, balancing and checks."""
        pool = snap.pools[key]
        out: dict[str, Any] = {}
        if any(ep.cluster or ep.region for ep in pool.endpoints):
            out["placement"] = {ep.address: {"cluster": ep.cluster, "region": ep.region}
                                for ep in pool.endpoints}
        spec = snap.backend_policies.get(key)
        if spec is not None:
            out["balancing"] = {"policy": spec.key, "mode": spec.mode,
                                "max_utilization": spec.max_utilization
                                if spec.mode == "CUSTOM_METRICS" else None,
                                "max_in_flight": spec.max_in_flight, "dry_run": spec.dry_run,
                                "timeout_sec": spec.timeout}
        check = snap.health_checks.get(key)
        if check is not None:
            out["health_check"] = {"source": check.source, "path": check.path,
                                   "interval": check.interval}
        return out

    def _ejected(self, snap: Snapshot, now: float) -> dict[str, list[str]]:
        """Endpoints ejected by outlier detection now, by backendRef key."""
        out: dict[str, list[str]] = {}
        for route in snap.routes:
            for rule in route.rules:
                for b in rule.backends:
                    detector = self.gateway.outlier_detector(b.key)
                    if detector is not None and b.pool is not None:
                        out[b.key] = [a for a in b.pool.addresses if detector.is_ejected(a, now)]
        return out

    async def _status(self, _: web.Request) -> web.Response:
        snap = self.gateway.snapshot
        now = asyncio.get_running_loop().time()
        status = {
            "listeners": [
                {"name": lst.name, "port": lst.port,
                 "bound_port": self._listeners[lst.port][1] if lst.port in self._listeners else None}
                for lst in snap.listeners
            ],
            "pools": {
                key: {
                    "scheduler_profile": self.gateway.scheduler_profile_of(pool),
                    "endpoints": [self._endpoint_status(address, now) for address in pool.addresses],
                    **self._placement_status(snap, key),
                }
                for key, pool in snap.pools.items()
            },
            "ejected": self._ejected(snap, now),
            "active_requests": self.gateway.active_requests,
        }
        return web.Response(body=orjson.dumps(status, option=orjson.OPT_INDENT_2),
                            content_type="application/json")

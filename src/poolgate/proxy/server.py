"""The gateway process: one `Gateway` with its listeners, admin listener, metrics scraper,
health checker, hot reload and (with `--discovery kubernetes`) pod discovery, started and
stopped together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from poolgate._aio import cancel_and_wait
from poolgate.config.build import PROFILE_NAMES
from poolgate.config.snapshot import Snapshot
from poolgate.datalayer import MetricsScraper
from poolgate.datalayer.health_checker import ActiveHealthChecker, targets_for
from poolgate.datalayer.scraper_cadence import (
    DEFAULT_IDLE_AFTER,
    DEFAULT_IDLE_INTERVAL,
    ScrapeCadence,
)
from poolgate.discovery.kubernetes import PodCache
from poolgate.observability.access_log import AccessLog
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.admin import AdminServer
from poolgate.proxy.epp import EndpointPicker, ExtProcFront
from poolgate.proxy.gateway import Gateway, GatewayOptions
from poolgate.proxy.kube_mode import KubeMode, KubeOptions
from poolgate.proxy.listeners import Front, ListenError, Listeners
from poolgate.proxy.pod_discovery import PodDiscovery
from poolgate.proxy.reload import Reloader
from poolgate.state.kv_endpoints import owner_node
from poolgate.state.redis_load_board import RedisLoadBoard
from poolgate.state.shared_load import SharedLoadSettings
from poolgate.state.shared_load_sync import SharedLoadMetrics, SharedLoadSync

log = logging.getLogger("poolgate.server")


@dataclass
class ServeOptions:
    """Command-line settings of `poolgate serve`."""

    paths: list[Path]
    host: str = "0.0.0.0"
    port: int | None = None  # replaces the Gateway's HTTP listener port
    port_map: dict[int, int] = field(default_factory=dict)  # declared port -> bound port
    # SO_REUSEPORT on the listeners: several processes, each a gateway of its own, share them.
    reuse_port: bool = False
    admin_host: str = "127.0.0.1"
    admin_port: int = 9901
    access_log: str = "-"
    watch: bool = True
    drain_seconds: float = 30.0
    scrape_interval: float = 0.05
    # An idle pool's endpoints are scraped this often (no request bound for the pool in
    # `scrape_idle_after` seconds); at most half the staleness bound. Issue 16, item 5.
    scrape_idle_interval: float = DEFAULT_IDLE_INTERVAL
    scrape_idle_after: float = DEFAULT_IDLE_AFTER
    gateway: GatewayOptions = field(default_factory=GatewayOptions)
    # "local": endpoints from LocalEndpoints only; "kubernetes": also the Ready pods each
    # InferencePool selects, watched through the API (in-cluster, or `kubeconfig`).
    discovery: str = "local"
    kubeconfig: Path | None = None
    # "files": the manifests are `paths`; "kubernetes": the objects of the API (plus `paths`,
    # which override them), with status written back (implies discovery "kubernetes").
    source: str = "files"
    kube: KubeOptions = field(default_factory=KubeOptions)
    # "http": the Gateways' listeners (`poolgate serve`); "ext_proc": only the endpoint
    # picker's gRPC server on `host:grpc_port` (`poolgate epp`), Envoy being the data plane.
    front: str = "http"
    grpc_port: int = 9002
    # Several gateway replicas: exchange in-flight counts through Redis (None: local only).
    shared_load: SharedLoadSettings | None = None

    @property
    def strictest_staleness(self) -> float:
        """The smallest staleness bound any pool's picker applies (--metrics-staleness, or a
        --scheduler-config profile's own): the scraper's idle interval stays under it."""
        return min([self.gateway.staleness,
                    *(c.staleness for c in self.gateway.custom_profiles.values()
                      if "staleness" in c.model_fields_set)])

    @property
    def profile_names(self) -> frozenset[str]:
        """Scheduler profiles a pool's annotation may name: built-in and --scheduler-config."""
        return PROFILE_NAMES | frozenset(self.gateway.custom_profiles)


class GatewayServer:
    """Composes the gateway process around one `Gateway` and runs its lifecycle."""

    def __init__(self, options: ServeOptions, snapshot: Snapshot,
                 pods: PodCache | None = None) -> None:
        self.options = options
        # With --discovery kubernetes: the pods seen so far (the caller's first load used it).
        self.pods = pods
        self.metrics = GatewayMetrics()
        self.gateway = Gateway(snapshot, options.gateway, self.metrics,
                               AccessLog.open(options.access_log))
        cadence = ScrapeCadence(options.scrape_interval,
                                max(options.scrape_interval, options.scrape_idle_interval),
                                options.scrape_idle_after)
        self.scraper = MetricsScraper(self.gateway.store, cadence,
                                      staleness=options.strictest_staleness,
                                      seed=options.gateway.seed)
        self.gateway.on_pool_request = self.scraper.pool_requested
        self.health_checker = ActiveHealthChecker(self.gateway.health, seed=options.gateway.seed)
        self.health_checker.set_targets(targets_for(snapshot.pools, snapshot.health_checks))
        self.on_reload: list[Callable[[Snapshot], None]] = []
        self.listeners: Front = (
            ExtProcFront(EndpointPicker(self.gateway), host=options.host, port=options.grpc_port)
            if options.front == "ext_proc" else
            Listeners(self.gateway.handle, host=options.host, port=options.port,
                      port_map=options.port_map, max_body=options.gateway.max_body_bytes,
                      reuse_port=options.reuse_port))
        self.kube = None if options.source != "kubernetes" else KubeMode(
            options.kube, self._cluster_changed, seed=options.gateway.seed)
        self._cluster_reloads: set[asyncio.Task[bool]] = set()
        self.reloader = Reloader(options.paths, options.profile_names, pods, self.metrics,
                                 sync_listeners=self.listeners.sync, apply=self._apply,
                                 source=self.kube)
        self.pod_discovery = None if pods is None else PodDiscovery(
            pods, self.reloader.reload, kubeconfig=options.kubeconfig, seed=options.gateway.seed,
            client=self.kube.client if self.kube is not None else None)
        self.admin = AdminServer(options.admin_host, options.admin_port, gateway=self.gateway,
                                 metrics=self.metrics, listeners=self.listeners,
                                 health_checker=self.health_checker,
                                 staleness=options.gateway.staleness)
        self.shared_load = None if options.shared_load is None else _shared_load(
            options.shared_load, self.gateway, self.metrics)
        self._record_pools(snapshot)

    async def start(self) -> None:
        self.scraper.set_endpoints(self.gateway.pool_addresses())
        self.scraper.start()
        self.gateway.kv_events.start()
        if self.shared_load is not None:
            self.shared_load.start()
        self.health_checker.start()
        try:
            await self.listeners.sync(self.gateway.snapshot)
        except ListenError as e:
            raise e.naming("--grpc-port") from None  # the HTTP listeners name their own flag
        try:
            await self.admin.start()
        except ListenError as e:
            raise e.naming("--admin-port") from None
        if self.kube is not None:
            await self.kube.start()
            await self.reloader.reload("cluster objects")
        if self.pod_discovery is not None:
            await self.pod_discovery.start(self.gateway.snapshot)
        if self.options.watch:
            self.reloader.watch()

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (up to the drain time), then close."""
        self.admin.mark_draining()
        await self.reloader.close()
        await cancel_and_wait(list(self._cluster_reloads))
        if self.pod_discovery is not None:
            await self.pod_discovery.close()
        if self.kube is not None:  # after pod discovery, which shares its API connection
            await self.kube.close()
        self.listeners.stop_accepting()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.options.drain_seconds
        while self.gateway.active_requests > 0 and loop.time() < deadline:
            await asyncio.sleep(0.05)
        if self.gateway.active_requests:
            log.warning("drain time over: cutting %d request(s) still running",
                        self.gateway.active_requests)
            self.gateway.cutting = True
        await self.listeners.close()
        await self.admin.close()
        if self.shared_load is not None:
            await self.shared_load.close()
        await self.scraper.close()
        await self.gateway.kv_events.close()
        await self.health_checker.close()
        await self.gateway.close()

    @property
    def bound_ports(self) -> dict[int, int]:
        """Declared listener port -> the port actually bound."""
        return self.listeners.bound_ports

    async def reload(self, what: str = "configuration") -> bool:
        """Load the manifests again (with the pods seen so far); swap atomically on success,
        keep the old config on failure."""
        return await self.reloader.reload(what)

    def _cluster_changed(self) -> None:
        """The API objects changed (a debounced burst): rebuild, after any rebuild running."""
        task = asyncio.get_running_loop().create_task(
            self.reloader.reload("cluster objects"), name="poolgate-cluster-reload")
        self._cluster_reloads.add(task)
        task.add_done_callback(self._cluster_reloads.discard)

    def _apply(self, snapshot: Snapshot) -> None:
        """Install a reloaded snapshot: the gateway first, then what follows its endpoints."""
        self.gateway.swap(snapshot)
        self.scraper.set_endpoints(self.gateway.pool_addresses())
        self.health_checker.set_targets(targets_for(snapshot.pools, snapshot.health_checks))
        self._record_pools(snapshot)
        for callback in self.on_reload:
            callback(snapshot)
        if self.pod_discovery is not None:
            self.pod_discovery.watch_pools(snapshot)

    def _record_pools(self, snapshot: Snapshot) -> None:
        for key, pool in snapshot.pools.items():
            self.metrics.endpoints_ready.labels(key).set(len(pool.endpoints))


def _shared_load(settings: SharedLoadSettings, gateway: Gateway,
                 metrics: GatewayMetrics) -> SharedLoadSync:
    """The shared in-flight view on the Redis node that owns its key (of `settings.nodes`)."""
    board = RedisLoadBoard(owner_node(settings.nodes, settings.key), settings.key,
                           settings.timeout)
    store = gateway.store
    return SharedLoadSync(settings, board, store.own_counts, store.set_peer_counts,
                          SharedLoadMetrics(metrics.registry))

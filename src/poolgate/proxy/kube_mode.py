"""`poolgate serve --source kubernetes`: the gateway's manifests from the Kubernetes API, and their
status written back by the replica that holds the Lease.

`KubeMode` owns the API connection and composes the pieces: a `ClusterSource` (list+watch of
every kind, debounced), the snapshot builds the `Reloader` runs through `prepare`, a
`StatusWriter` fed after every swap, and the Lease election that lets one replica write.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from poolgate import __version__
from poolgate._aio import cancel_and_wait
from poolgate.config.snapshot import Snapshot
from poolgate.controller.source import (
    DEFAULT_CONTROLLER_NAME,
    ClusterBuild,
    ClusterSource,
    SourceError,
)
from poolgate.controller.writer import StatusWriter
from poolgate.discovery.kubernetes import PodCache
from poolgate.kube.client import (
    KubeClient,
    KubeError,
    credentials_for,
)
from poolgate.kube.leader import LeaderElector, LeaseElection, LeaseTiming
from poolgate.kube.resources import SERVICES
from poolgate.proxy.manifests import ConfigError

log = logging.getLogger("poolgate.server")


@dataclass(frozen=True)
class KubeOptions:
    """The settings of `--source kubernetes` (and of `--discovery kubernetes`'s credentials)."""

    kubeconfig: Path | None = None
    namespaces: tuple[str, ...] = ()  # empty: every namespace
    controller_names: tuple[str, ...] = (DEFAULT_CONTROLLER_NAME,)
    publish_service: str | None = None  # namespace/name of the Service that fronts the gateway
    leader_elect: bool = True
    lease_name: str = "poolgate-gateway"
    lease_namespace: str | None = None  # default: POD_NAMESPACE, else the credentials'
    identity: str = field(default_factory=lambda: os.environ.get("POD_NAME")
                          or f"{socket.gethostname()}_{os.getpid()}")
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    write_status: bool = True  # `poolgate epp` reads only: the Gateway's controller writes


def service_addresses(service: dict[str, Any] | None) -> list[dict[str, str]]:
    """A Gateway's `status.addresses` from the Service in front of it: its load balancer's
    ingress addresses, else its cluster IP(s)."""
    if not service:
        return []
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    out = []
    for entry in ingress:
        if entry.get("ip"):
            out.append({"type": "IPAddress", "value": str(entry["ip"])})
        elif entry.get("hostname"):
            out.append({"type": "Hostname", "value": str(entry["hostname"])})
    if out:
        return out
    spec = service.get("spec") or {}
    ips = spec.get("clusterIPs") or ([spec["clusterIP"]] if spec.get("clusterIP") else [])
    return [{"type": "IPAddress", "value": str(ip)} for ip in ips if ip and ip != "None"]


class KubeMode:
    """The API side of a gateway in controller mode."""

    def __init__(self, options: KubeOptions, on_change: Callable[[], None],
                 *, seed: int | None = None) -> None:
        self.options = options
        self.credentials = credentials_for(options.kubeconfig)
        self.session = aiohttp.ClientSession()
        self.client = KubeClient(self.credentials, self.session,
                                 f"poolgate/{__version__} (gateway; {options.identity})")
        self.source = ClusterSource(self.client, options.namespaces, options.controller_names,
                                    on_change, seed=seed)
        self.writer = StatusWriter(self.client, options.controller_names[0])
        self._pending: ClusterBuild | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """List and watch everything; wait (bounded) for the first lists; start writing status
        (as the Lease holder, with `leader_elect`)."""
        where = ("every namespace" if not self.options.namespaces
                 else "namespace(s) " + ", ".join(self.options.namespaces))
        log.info("reading Gateway API and Inference Extension objects from %s in %s (controller "
                 "%s)", self.credentials.server, where, ", ".join(self.options.controller_names))
        self.source.start()
        if not await self.source.wait_synced():
            log.warning("not every resource type was listed in time; serving what is known")
        if not self.options.write_status:
            return
        lead: Callable[[], Awaitable[None]] = self.writer.lead
        if self.options.leader_elect:
            namespace = (self.options.lease_namespace or os.environ.get("POD_NAMESPACE")
                         or self.credentials.namespace)
            election = LeaseElection(self.client, namespace, self.options.lease_name,
                                     LeaderElector(self.options.identity, self.options.timing))
            log.info("status is written by the holder of Lease %s/%s; this replica is %s",
                     namespace, self.options.lease_name, self.options.identity)
            self._tasks.append(asyncio.create_task(election.run(lead), name="poolgate-lease"))
        else:
            self._tasks.append(asyncio.create_task(self.writer.lead(), name="poolgate-status"))

    def prepare(self, paths: Sequence[Path], profiles: Collection[str],
                pods: PodCache | None) -> Callable[[], Snapshot]:
        """A build of the objects seen now, to run in a worker thread (raises `ConfigError`)."""
        objects = self.source.objects()

        def build() -> Snapshot:
            try:
                built = self.source.build(objects, paths, profiles, pods)
            except SourceError as e:
                raise ConfigError(e.problems) from None
            assert built.result.snapshot is not None
            self._pending = built
            return built.result.snapshot

        return build

    async def applied(self) -> None:
        """The last prepared build was swapped in: log what changed, hand it to the writer."""
        built, self._pending = self._pending, None
        if built is None:
            return
        self.source.log_problems(built)
        addresses = await self._addresses()
        self.writer.offer(built, addresses=addresses)

    async def _addresses(self) -> list[dict[str, str]] | None:
        name = self.options.publish_service
        if not name:
            return None
        namespace, _, service = name.partition("/")
        try:
            found = await self.client.get(SERVICES.object_path(namespace, service))
        except KubeError as e:
            log.warning("--publish-service %s: %s", name, e)
            return None
        if found is None:
            log.warning("--publish-service %s: no such Service", name)
        return service_addresses(found)

    async def close(self) -> None:
        """Stop writing status and watching, and close the API connection."""
        await cancel_and_wait(self._tasks)
        await self.source.close()
        await self.session.close()

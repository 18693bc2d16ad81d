"""Pod discovery for `--discovery kubernetes`: watch the pods of the pools' namespaces through
the Kubernetes API, and rebuild the snapshot when they change."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

from poolgate._aio import cancel_and_wait
from poolgate.config.snapshot import Snapshot
from poolgate.discovery.kubernetes import PodCache, PodWatcher
from poolgate.kube import KubeClient, credentials_for

log = logging.getLogger("poolgate.server")

# How long start-up waits for the first pod lists, and how long a burst of pod changes is
# gathered before the snapshot is rebuilt.
_FIRST_LIST_WAIT = 10.0
_POD_CHANGE_DEBOUNCE = 0.1


def pool_namespaces(snapshot: Snapshot) -> set[str]:
    """The namespaces of the snapshot's InferencePools (where their pods are looked for)."""
    return {pool.namespace for pool in snapshot.pools.values()}


class PodDiscovery:
    """Keeps `pods` current for the pools' namespaces and calls `rebuild(reason)` after a change,
    once for a burst of changes. `kubeconfig`: None in a cluster (the pod's service account)."""

    def __init__(self, pods: PodCache, rebuild: Callable[[str], Awaitable[object]], *,
                 kubeconfig: Path | None, seed: int | None,
                 client: KubeClient | None = None) -> None:
        self._pods = pods
        self._rebuild = rebuild
        self._kubeconfig = kubeconfig
        self._client = client  # shared with --source kubernetes, else made at start
        self._seed = seed
        self._watcher: PodWatcher | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._dirty = False
        self._closing = False

    async def start(self, snapshot: Snapshot) -> None:
        """Watch the pools' namespaces, wait (bounded) for their first lists, then rebuild."""
        client = self._client
        if client is None:
            credentials = credentials_for(self._kubeconfig)  # may raise: before the session
            self._session = aiohttp.ClientSession()
            client = KubeClient(credentials, self._session)
        self._watcher = PodWatcher(client, self._pods, self._pods_changed, seed=self._seed)
        self._watcher.watch_namespaces(pool_namespaces(snapshot))
        if not await self._watcher.wait_synced(_FIRST_LIST_WAIT):
            log.warning("pod discovery: not every namespace listed within %gs; serving with "
                        "what is known and adding pods as they are seen", _FIRST_LIST_WAIT)
        self._dirty = False
        await self._rebuild("endpoints (pods)")

    def watch_pools(self, snapshot: Snapshot) -> None:
        """Follow the namespaces of `snapshot`'s pools from now on (after a reload)."""
        if self._watcher is not None:
            self._watcher.watch_namespaces(pool_namespaces(snapshot))

    async def close(self) -> None:
        """Stop rebuilding and watching, and close the API connection."""
        self._closing = True
        if self._task is not None:
            await cancel_and_wait([self._task])
        if self._watcher is not None:
            await self._watcher.close()
        if self._session is not None:
            await self._session.close()

    def _pods_changed(self) -> None:
        """A watch changed the endpoints: rebuild soon, once for a burst of changes."""
        self._dirty = True
        if self._closing or (self._task is not None and not self._task.done()):
            return
        self._task = asyncio.get_running_loop().create_task(
            self._apply_changes(), name="poolgate-pods-reload")

    async def _apply_changes(self) -> None:
        while self._dirty and not self._closing:
            await asyncio.sleep(_POD_CHANGE_DEBOUNCE)
            self._dirty = False
            await self._rebuild("endpoints (pods)")

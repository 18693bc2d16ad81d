"""Hot reload: load the manifests again (on request, or when a watched file changes) and apply
the result atomically, or keep serving the previous configuration when it is rejected."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path

from poolgate._aio import cancel_and_wait
from poolgate.config.snapshot import Snapshot
from poolgate.discovery.kubernetes import PodCache
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.manifests import ConfigError, load

log = logging.getLogger("poolgate.server")


class Reloader:
    """Turns the manifests (and the pods seen so far) into a new snapshot and hands it on.

    A reload runs `sync_listeners(snapshot)` first: a `ConfigError` or `OSError` from it, as from
    loading, rejects the reload. Then `apply(snapshot)` installs it. One reload runs at a time;
    each counts in `metrics.reloads` as applied or rejected."""

    def __init__(self, paths: Sequence[Path], profiles: Collection[str], pods: PodCache | None,
                 metrics: GatewayMetrics, *,
                 sync_listeners: Callable[[Snapshot], Awaitable[None]],
                 apply: Callable[[Snapshot], None]) -> None:
        self._paths = list(paths)
        self._profiles = profiles
        self._pods = pods
        self._metrics = metrics
        self._sync_listeners = sync_listeners
        self._apply = apply
        self._lock = asyncio.Lock()
        self._watch_task: asyncio.Task[None] | None = None
        self._closing = False

    async def reload(self, what: str = "configuration") -> bool:
        """Load the manifests again (with the pods seen so far); swap atomically on success,
        keep the old config on failure."""
        async with self._lock:
            return await self._reload(what)

    def watch(self) -> None:
        """Reload whenever a file under the manifest paths changes (until `close`)."""
        self._watch_task = asyncio.create_task(self._watch(), name="config-watch")

    async def close(self) -> None:
        """Stop watching the files."""
        self._closing = True
        if self._watch_task is not None:
            await cancel_and_wait([self._watch_task])

    async def _reload(self, what: str) -> bool:
        pods = self._pods.copy() if self._pods is not None else None
        try:
            snapshot = await asyncio.to_thread(load, self._paths, self._profiles, pods)
            await self._sync_listeners(snapshot)
        except ConfigError as e:
            self._metrics.reloads.labels("rejected").inc()
            log.error("configuration reload rejected; still serving the previous one:\n%s", e)
            return False
        except OSError as e:
            self._metrics.reloads.labels("rejected").inc()
            log.error("configuration reload failed (%s); still serving the previous one", e)
            return False
        self._apply(snapshot)
        self._metrics.reloads.labels("applied").inc()
        log.info("%s reloaded", what)
        return True

    async def _watch(self) -> None:
        from watchfiles import awatch

        roots = [str(p) for p in self._paths]
        async for _ in awatch(*roots, debounce=200, step=50, recursive=True,
                              force_polling=None):
            if self._closing:
                return
            await self.reload()

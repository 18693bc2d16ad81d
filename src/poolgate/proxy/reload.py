"""Hot reload: load the manifests again (on request, or when a watched file changes) and apply
the result atomically, or keep serving the previous configuration when it is rejected.

Watching: a change is applied once the manifests have been quiet for `SETTLE_MS` (an editor or a
script that writes a file in several parts is not caught half-way). A manifest given as a file is
watched through its directory, so a ConfigMap mounted by kubelet (`gateway.yaml ->
..data/gateway.yaml`, `..data` swapped to a new directory atomically) reloads too: watching the
file itself would follow the old target, which kubelet deletes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from pathlib import Path
from typing import Protocol

from poolgate._aio import cancel_and_wait
from poolgate.config.snapshot import Snapshot
from poolgate.discovery.kubernetes import PodCache
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.listeners import ListenError
from poolgate.proxy.manifests import ConfigError, load

log = logging.getLogger("poolgate.server")

# How long the watched manifests must be quiet (no file's size or mtime changing) before a
# change is applied; a file rewritten without pause is applied after `_SETTLE_MAX` anyway.
SETTLE_MS = 300
_SETTLE_MAX = 10.0


class ObjectSource(Protocol):
    """Where manifests come from besides the files (`--source kubernetes`): `prepare` captures
    what is known now and returns the build to run in a worker thread (raising `ConfigError`);
    `applied` follows a successful swap of that build."""

    def prepare(self, paths: Sequence[Path], profiles: Collection[str],
                pods: PodCache | None) -> Callable[[], Snapshot]: ...

    async def applied(self) -> None: ...


class Reloader:
    """Turns the manifests (and the pods seen so far) into a new snapshot and hands it on.

    A reload runs `sync_listeners(snapshot)` first: a `ConfigError` or `OSError` from it, as from
    loading, rejects the reload. Then `apply(snapshot)` installs it. One reload runs at a time;
    each counts in `metrics.reloads` as applied or rejected."""

    def __init__(self, paths: Sequence[Path], profiles: Collection[str], pods: PodCache | None,
                 metrics: GatewayMetrics, *,
                 sync_listeners: Callable[[Snapshot], Awaitable[None]],
                 apply: Callable[[Snapshot], None], source: ObjectSource | None = None) -> None:
        self._paths = list(paths)
        self._source = source
        self._profiles = profiles
        self._pods = pods
        self._metrics = metrics
        self._sync_listeners = sync_listeners
        self._apply = apply
        self._lock = asyncio.Lock()
        self._warned: set[str] = set()  # the warnings logged so far, not repeated
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
            if self._source is not None:
                snapshot: Snapshot | None = await asyncio.to_thread(
                    self._source.prepare(self._paths, self._profiles, pods))
            else:
                snapshot = await asyncio.to_thread(_load_settled, self._paths, self._profiles,
                                                   pods, self._warned)
            if snapshot is None:
                # A file changed while it was read: the watch reports that change, and the
                # reload after it reads what was finally written.
                log.info("manifests changed while loading; waiting for them to settle")
                return False
            await self._sync_listeners(snapshot)
        except ConfigError as e:
            self._metrics.reloads.labels("rejected").inc()
            log.error("configuration reload rejected; still serving the previous one:\n%s", e)
            return False
        except (OSError, ListenError) as e:
            self._metrics.reloads.labels("rejected").inc()
            log.error("configuration reload failed (%s); still serving the previous one", e)
            return False
        self._apply(snapshot)
        self._metrics.reloads.labels("applied").inc()
        log.info("%s reloaded", what)
        if self._source is not None:
            await self._source.applied()
        return True

    async def _watch(self) -> None:
        from watchfiles import awatch

        roots, relevant = watch_roots(self._paths)
        async for _ in awatch(*roots, watch_filter=relevant, step=50, recursive=True,
                              force_polling=None):
            if self._closing:
                return
            await self._settle()
            await self.reload()

    async def _settle(self) -> None:
        """Wait until no manifest file has changed for `SETTLE_MS` (at most `_SETTLE_MAX`)."""
        loop = asyncio.get_running_loop()
        give_up = loop.time() + _SETTLE_MAX
        stamp = await asyncio.to_thread(_stamp, self._paths)
        while loop.time() < give_up:
            await asyncio.sleep(SETTLE_MS / 1000)
            now = await asyncio.to_thread(_stamp, self._paths)
            if now == stamp:
                return
            stamp = now


def _load_settled(paths: Sequence[Path], profiles: Collection[str],
                  pods: PodCache | None, warned: set[str]) -> Snapshot | None:
    """`load`, or None when a manifest changed while it was being read (a write in progress);
    logs only the warnings not in `warned` (updated)."""
    before = _stamp(paths)
    snapshot = load(paths, profiles, pods, warned=warned)
    return snapshot if _stamp(paths) == before else None


def _stamp(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    """(path, mtime_ns, size) of every file the manifests are read from."""
    out = []
    for root in paths:
        files = sorted(f for f in root.rglob("*") if f.is_file()) if root.is_dir() else [root]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_mtime_ns, st.st_size))
    return out


def watch_roots(paths: Sequence[Path]) -> tuple[list[str], Callable[[object, str], bool]]:
    """The directories to watch for `paths`, and which changes in them matter: anything under a
    directory given as such; for a file, the file itself and kubelet's `..data` / `..TIMESTAMP`
    entries beside it (how a mounted ConfigMap or Secret is updated)."""
    dirs = {p.absolute() for p in paths if p.is_dir()}
    files = {p.absolute() for p in paths if not p.is_dir()}
    roots = sorted({str(d) for d in dirs} | {str(f.parent) for f in files})
    watched_names = {(f.parent, f.name) for f in files}

    def relevant(change: object, changed: str) -> bool:
        path = Path(changed)
        if any(path == d or d in path.parents for d in dirs):
            return True
        for parent, name in watched_names:
            if path.parent == parent and (path.name == name or path.name.startswith("..")):
                return True
            if parent in path.parents and path.relative_to(parent).parts[0].startswith(".."):
                return True
        return False

    return roots, relevant

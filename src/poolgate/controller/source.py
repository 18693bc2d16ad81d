"""`poolgate serve --source kubernetes`: the manifests come from the Kubernetes API.

`ClusterSource` runs one `Reflector` (list+watch) per watched resource type and namespace, and
calls `on_change()` once a burst of changes has been quiet for `DEBOUNCE` seconds, so that an
`kubectl apply -f` of many objects is one snapshot swap. `build()` turns the objects seen so far
(plus the `-f` files, which override an API object of the same kind and name) into a snapshot
with the same validation as files; an object with errors is left out and the build is redone
without it, so that one broken object does not stop the rest from being served: its errors go
into its status.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from poolgate._aio import cancel_and_wait
from poolgate.api.loader import LoadedManifests, load_manifests, load_object
from poolgate.api.problems import Problem
from poolgate.config.build import LoadResult, resolve
from poolgate.controller.scope import Scope, key_of, scope
from poolgate.discovery.source import EndpointSource
from poolgate.kube.client import KubeClient
from poolgate.kube.informer import Reflector
from poolgate.kube.resources import WATCHED, ResourceType

log = logging.getLogger("poolgate.controller")

DEFAULT_CONTROLLER_NAME = "poolgate.dev/gateway-controller"
DEBOUNCE = 0.1  # seconds of quiet after a change before the snapshot is rebuilt
_MAX_PASSES = 10  # builds per reload while leaving out objects with errors
_SYNC_WAIT = 15.0  # start-up waits at most this long for the first lists

ObjectId = tuple[str, str]  # (kind, namespace/name)


class SourceError(Exception):
    """The manifests could not be built at all (errors in `-f` files, or errors that no single
    API object is to blame for); `problems` are printable lines."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class ClusterBuild:
    """One build from the API objects: the result, the scope it was built in, the objects
    left out for their errors, and the objects as read (for their status)."""

    result: LoadResult
    scope: Scope
    invalid: Mapping[ObjectId, tuple[str, ...]]
    objects: tuple[Mapping[str, Any], ...]
    overridden: frozenset[ObjectId] = field(default=frozenset())


def object_id(obj: Mapping[str, Any]) -> ObjectId:
    """(kind, namespace/name); cluster-scoped objects get the `default` namespace, as the loader
    keys them."""
    return str(obj.get("kind", "")), key_of(obj)


def source_name(oid: ObjectId) -> str:
    """How problems about an API object name it (in place of a file)."""
    return f"api:{oid[0]}/{oid[1]}"


def _stripped(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The object without what the build never reads and would only cost to convert: status,
    managedFields and kubectl's last-applied copy."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(obj.get("metadata") or {})
    meta.pop("managedFields", None)
    annotations = meta.get("annotations")
    if isinstance(annotations, dict) and "kubectl.kubernetes.io/last-applied-configuration" in \
            annotations:
        meta["annotations"] = {k: v for k, v in annotations.items()
                               if k != "kubectl.kubernetes.io/last-applied-configuration"}
    out["metadata"] = meta
    return out


class ClusterSource:
    """The watched objects, and the builds made from them."""

    def __init__(self, client: KubeClient, namespaces: Sequence[str],
                 controller_names: Sequence[str], on_change: Callable[[], None], *,
                 resources: Sequence[ResourceType] = WATCHED, seed: int | None = None) -> None:
        self.client = client
        self.namespaces = list(namespaces)
        self.controller_names = list(controller_names)
        self._on_change = on_change
        self.reflectors: list[Reflector] = []
        for resource in resources:
            scopes: list[str | None] = (
                [None] if not resource.namespaced or not self.namespaces else
                list(self.namespaces))
            self.reflectors.extend(Reflector(client, resource, ns, self._changed, seed=seed)
                                   for ns in scopes)
        self._debounce: asyncio.Task[None] | None = None
        self._dirty = False
        self._closing = False
        # load_object results by (kind, key, resourceVersion): an unchanged object is not
        # converted and validated again at every build.
        self._loaded: dict[tuple[ObjectId, str], LoadedManifests] = {}
        self._last_warnings: set[str] = set()

    def start(self) -> None:
        """Start every list+watch."""
        for reflector in self.reflectors:
            reflector.start()

    async def wait_synced(self, timeout: float = _SYNC_WAIT) -> bool:
        """Wait until every resource type was listed once (or found missing)."""
        try:
            async with asyncio.timeout(timeout):
                for reflector in self.reflectors:
                    await reflector.synced.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop watching."""
        self._closing = True
        if self._debounce is not None:
            await cancel_and_wait([self._debounce])
        for reflector in self.reflectors:
            await reflector.close()

    def objects(self) -> tuple[Mapping[str, Any], ...]:
        """Every object seen so far (a copy of the list; objects are replaced, never changed)."""
        return tuple(obj for r in self.reflectors for obj in r.objects.values())

    def _changed(self) -> None:
        self._dirty = True
        if self._closing or (self._debounce is not None and not self._debounce.done()):
            return
        self._debounce = asyncio.get_running_loop().create_task(
            self._settle(), name="poolgate-controller-debounce")

    async def _settle(self) -> None:
        while self._dirty and not self._closing:
            self._dirty = False
            await asyncio.sleep(DEBOUNCE)
            if not self._dirty:
                self._on_change()

    def build(self, objects: Sequence[Mapping[str, Any]], paths: Sequence[Path],
              profiles: Collection[str], pods: EndpointSource | None) -> ClusterBuild:
        """Build a snapshot from `objects` and the `-f` files (run in a worker thread: it only
        reads its arguments and this source's conversion cache)."""
        files = load_manifests(paths)
        file_errors = [str(p) for p in files.problems if p.severity == "error"]
        if file_errors:
            raise SourceError(file_errors)
        overrides = {(r.resource.kind, r.resource.key) for r in files.resources}
        in_scope = scope(objects, self.controller_names)
        loaded: dict[ObjectId, LoadedManifests] = {}
        overridden: set[ObjectId] = set()
        for obj in in_scope.objects:
            oid = object_id(obj)
            if oid in overrides:
                overridden.add(oid)
                continue
            loaded[oid] = self._load(oid, obj)
        result, invalid = self._resolve_leaving_out(files, loaded, in_scope, profiles, pods)
        self._forget_stale(objects)
        return ClusterBuild(result, in_scope, invalid, tuple(objects), frozenset(overridden))

    @staticmethod
    def _resolve_leaving_out(
        files: LoadedManifests, loaded: Mapping[ObjectId, LoadedManifests], in_scope: Scope,
        profiles: Collection[str], pods: EndpointSource | None,
    ) -> tuple[LoadResult, dict[ObjectId, tuple[str, ...]]]:
        """Resolve; while errors remain, leave out the objects they are about and resolve
        again. Errors about no API object (a file's, say) fail the whole build."""
        by_source = {source_name(oid): oid for oid in loaded}
        invalid: dict[ObjectId, tuple[str, ...]] = {}
        for _ in range(_MAX_PASSES):
            manifests = LoadedManifests()
            manifests.extend(files)
            for oid, one in loaded.items():
                if oid not in invalid:
                    manifests.extend(one)
            result = resolve(manifests, profiles=profiles, cluster=pods,
                             foreign_gateways=in_scope.foreign_gateways)
            blamed: dict[ObjectId, list[str]] = {}
            unblamed: list[Problem] = []
            for problem in result.errors:
                found = by_source.get(problem.file)
                if found is None:
                    unblamed.append(problem)
                else:
                    blamed.setdefault(found, []).append(problem.message)
            if unblamed:
                raise SourceError([str(p) for p in unblamed])
            if not blamed:
                return result, invalid
            for oid, messages in blamed.items():
                invalid[oid] = tuple(messages)
        raise SourceError([f"{source_name(oid)}: {m}" for oid, ms in invalid.items() for m in ms])

    def log_problems(self, built: ClusterBuild) -> None:
        """Log the warnings and the objects left out, when they differ from the last build's."""
        lines = {str(p) for p in built.result.warnings}
        lines |= {f"{source_name(oid)}: left out (its status says why): {m}"
                  for oid, ms in built.invalid.items() for m in ms}
        for line in sorted(lines - self._last_warnings):
            log.warning("%s", line)
        self._last_warnings = lines

    def _load(self, oid: ObjectId, obj: Mapping[str, Any]) -> LoadedManifests:
        version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
        cached = self._loaded.get((oid, version))
        if cached is None or not version:
            cached = load_object(_stripped(obj), source_name(oid))
            self._loaded[(oid, version)] = cached
        return cached

    def _forget_stale(self, objects: Sequence[Mapping[str, Any]]) -> None:
        live = {(object_id(o), str((o.get("metadata") or {}).get("resourceVersion", "")))
                for o in objects}
        for stale in [k for k in self._loaded if k not in live]:
            self._loaded.pop(stale, None)

"""List+watch of one resource type, kept as a local cache of its objects (client-go's reflector).

The loop: list (the cache becomes exactly the list, and the list's `resourceVersion` is where the
watch starts), then watch from that version with bookmarks. Every event moves the version on; a
BOOKMARK only moves it (nothing changed). When the server ends a watch cleanly (its timeout),
the watch resumes from the last version seen, without a relist. An ERROR event with code 410
(`Expired`: the version is older than the server's history) or any other ERROR relists. API
errors and unreachable servers are retried with jittered exponential back-off. A 404 on the list
means the resource type is not served (its CRD is not installed): a warning, and the loop keeps
trying (backing off up to every `_MISSING_RETRY` seconds), so installing the CRD later is picked
up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Mapping
from typing import Any

from poolgate._aio import cancel_and_wait
from poolgate.kube.client import KubeClient, KubeError
from poolgate.kube.resources import ResourceType

log = logging.getLogger("poolgate.kube")

_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 30.0
_MISSING_RETRY = 30.0
_WATCH_SECONDS = 300

ObjectKey = tuple[str, str]  # (namespace or "", name)


def object_key(obj: Mapping[str, Any]) -> ObjectKey:
    """(namespace, name) of an API object."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class Reflector:
    """Keeps `objects` equal to the server's objects of one type (in one namespace, or all).

    `on_change()` is called after every change of `objects` (not for bookmarks or a relist that
    found nothing new). `synced` is set after the first list, or once the type is known to be
    missing (an empty cache is then the truth until it appears)."""

    def __init__(self, client: KubeClient, resource: ResourceType, namespace: str | None,
                 on_change: Callable[[], None], *, seed: int | None = None,
                 watch_seconds: int = _WATCH_SECONDS,
                 missing_retry: float = _MISSING_RETRY) -> None:
        self.client = client
        self.resource = resource
        self.namespace = namespace
        self.on_change = on_change
        self.objects: dict[ObjectKey, dict[str, Any]] = {}
        self.resource_version = ""
        self.synced = asyncio.Event()
        self.missing = False  # the last list answered 404 (CRD not installed)
        self.lists = 0
        self._rng = random.Random(seed)
        self._watch_seconds = watch_seconds
        self._missing_retry = missing_retry
        self._task: asyncio.Task[None] | None = None

    @property
    def path(self) -> str:
        """The collection this reflector lists and watches."""
        return self.resource.collection(self.namespace)

    def start(self) -> None:
        """Start the list+watch loop (in a running event loop)."""
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"poolgate-watch:{self.resource}:{self.namespace or '*'}")

    async def close(self) -> None:
        """Stop watching."""
        if self._task is not None:
            await cancel_and_wait([self._task])

    async def _run(self) -> None:
        backoff = _BACKOFF_MIN
        failing = False
        where = f"{self.resource}" + (f" in namespace {self.namespace}" if self.namespace else "")
        while True:
            try:
                await self._list()
                if failing:
                    log.info("watching %s again", where)
                    failing = False
                backoff = _BACKOFF_MIN
                while await self._watch():
                    backoff = _BACKOFF_MIN  # a clean end: resume from the last version
                continue  # the watch asked for a relist (410 or another ERROR event)
            except KubeError as e:
                if e.status == 410:
                    continue  # the watch's version expired (answered as an HTTP status): relist
                if e.status == 404:
                    if not self.missing:
                        log.warning("%s is not served by the API server (is its CRD installed?); "
                                    "its objects are ignored until it appears", where)
                        self.missing = True
                        self._replace({})
                    self.synced.set()
                    await asyncio.sleep(backoff * self._rng.uniform(0.8, 1.2))
                    backoff = min(self._missing_retry, backoff * 2)
                    continue
                if not failing:
                    log.warning("watching %s failing (the objects last seen stay in use): %s",
                                where, e)
                    failing = True
            except (ValueError, TypeError, AttributeError, KeyError) as e:
                # Not the JSON a list or a watch event is: list again later.
                if not failing:
                    log.warning("watching %s: unexpected answer (%s: %s); retrying", where,
                                type(e).__name__, e)
                    failing = True
            await asyncio.sleep(backoff * self._rng.uniform(0.8, 1.2))
            backoff = min(_BACKOFF_MAX, backoff * 2)

    async def _list(self) -> None:
        listed = await self.client.list(self.path)
        self.lists += 1
        if self.missing:
            log.info("%s is served now", self.resource)
            self.missing = False
        items = listed.get("items") or []
        kind, api_version = self.resource.kind, self.resource.api_version
        objects = {}
        for item in items:
            # List items carry no kind/apiVersion: the list has them.
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", api_version)
            objects[object_key(item)] = item
        self.resource_version = str((listed.get("metadata") or {}).get("resourceVersion", ""))
        self._replace(objects)
        self.synced.set()

    def _replace(self, objects: dict[ObjectKey, dict[str, Any]]) -> None:
        changed = _versions(objects) != _versions(self.objects)
        self.objects = objects
        if changed:
            self.on_change()

    async def _watch(self) -> bool:
        """Watch from `resource_version`; True when the watch ended cleanly (resume), False when
        the cache must be relisted."""
        async with contextlib.aclosing(self.client.watch(
                self.path, self.resource_version, self._watch_seconds)) as events:
            async for event in events:
                kind = event.get("type")
                obj = event.get("object") or {}
                if kind == "ERROR":
                    code = obj.get("code")
                    if code != 410:
                        log.warning("watch of %s: error %s: %s; listing again", self.resource,
                                    code, obj.get("message", ""))
                    return False
                version = str((obj.get("metadata") or {}).get("resourceVersion", ""))
                if version:
                    self.resource_version = version
                if kind == "BOOKMARK":
                    continue
                obj.setdefault("kind", self.resource.kind)
                obj.setdefault("apiVersion", self.resource.api_version)
                key = object_key(obj)
                if kind == "DELETED":
                    if self.objects.pop(key, None) is not None:
                        self.on_change()
                elif kind in ("ADDED", "MODIFIED"):
                    self.objects[key] = obj
                    self.on_change()
        return True


def _versions(objects: Mapping[ObjectKey, Mapping[str, Any]]) -> dict[ObjectKey, str]:
    return {k: str((o.get("metadata") or {}).get("resourceVersion", "")) for k, o in
            objects.items()}

"""Writing `status` back: only by the elected replica, only what changed.

Every replica builds and serves; `StatusWriter.offer(state)` hands each new build to the writer,
and `lead()` (run by the Lease election while this replica holds the Lease) writes the desired
status of every object whose status differs from what the API last showed, as a JSON merge
patch of the `status` subresource. What this replica wrote is remembered per object and
generation, so a status is not written twice while the watch has not yet shown the first write.
A failed write is retried at the next build or after `RETRY` seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from poolgate.controller.source import ClusterBuild, object_id
from poolgate.controller.status import BuildState, desired_statuses
from poolgate.kube.client import KubeClient, KubeError
from poolgate.kube.resources import STATUS_WRITTEN, ResourceType

log = logging.getLogger("poolgate.controller")

RETRY = 5.0

_TYPES: dict[tuple[str, str], ResourceType] = {(rt.api_version, rt.kind): rt
                                                for rt in STATUS_WRITTEN}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _comparable(status: Any) -> Any:
    """A status with `lastTransitionTime`s removed (they follow from the rest)."""
    if isinstance(status, Mapping):
        return {k: _comparable(v) for k, v in status.items() if k != "lastTransitionTime"}
    if isinstance(status, list):
        return [_comparable(v) for v in status]
    return status


class StatusWriter:
    """Turns builds into status writes while `lead()` runs."""

    def __init__(self, client: KubeClient, controller_name: str) -> None:
        self.client = client
        self.controller_name = controller_name
        self.writes = 0
        self._build: ClusterBuild | None = None
        self._addresses: list[dict[str, str]] = []
        self._programmed = True
        self._fresh = asyncio.Event()
        self._written: dict[tuple[str, str, str], tuple[int, Any]] = {}

    def offer(self, build: ClusterBuild, *, addresses: list[dict[str, str]] | None = None,
              programmed: bool = True) -> None:
        """A new build was swapped in (on every replica); the leader writes its status."""
        self._build = build
        if addresses is not None:
            self._addresses = addresses
        self._programmed = programmed
        self._fresh.set()

    async def lead(self) -> None:
        """Write statuses for every build offered, until cancelled (leadership lost)."""
        self._written.clear()  # a new term: compare with what the API shows, not our memory
        self._fresh.set()
        while True:
            try:
                async with asyncio.timeout(RETRY):
                    await self._fresh.wait()
            except TimeoutError:
                pass
            self._fresh.clear()
            if self._build is not None:
                failed = await self.write(self._build)
                if failed:
                    log.warning("status: %d write(s) failed; retrying", failed)

    async def write(self, build: ClusterBuild) -> int:
        """Write every status that differs; returns how many writes failed."""
        state = BuildState(build.scope, build.result.outcomes, build.invalid,
                           self.controller_name, self._addresses, self._programmed)
        failed = 0
        for obj, status in desired_statuses(build.objects, state, _now()):
            rt = _TYPES.get((str(obj.get("apiVersion")), str(obj.get("kind"))))
            if rt is None:
                continue
            meta = obj.get("metadata") or {}
            generation = meta.get("generation", 0)
            wanted = _comparable(status)
            if wanted == _comparable(obj.get("status") or {}):
                continue
            key = (*object_id(obj), rt.group)
            if self._written.get(key) == (generation, wanted):
                continue  # written already; the watch has not shown it yet
            path = rt.object_path(meta.get("namespace"), str(meta.get("name")))
            # A merge patch keeps the keys it does not mention: null the ones to remove.
            patch = {**{k: None for k in obj.get("status") or {} if k not in status}, **status}
            try:
                await self.client.patch_status(path, patch)
            except KubeError as e:
                if e.status != 404:  # deleted meanwhile: nothing to report on
                    log.debug("status of %s %s: %s", obj.get("kind"), key[1], e)
                    failed += 1
                continue
            self._written[key] = (generation, wanted)
            self.writes += 1
        return failed

"""The InferenceService controller: list + watch, render, server-side apply, report status."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from poolgate.kube import KubeClient, KubeError
from poolgate.kube import object_path as rendered_path
from poolgate.operator._drift import contains
from poolgate.operator.render import FIELD_MANAGER, render, router_name
from poolgate.operator.spec import API_VERSION, GROUP, KIND, PLURAL, VERSION, InvalidSpec
from poolgate.operator.status import condition, desired_status, status_changed

log = logging.getLogger("poolgate.operator")


@dataclass(frozen=True)
class ControllerOptions:
    """Scope and pacing of the controller."""

    namespace: str | None = None  # None: every namespace
    resync_seconds: float = 300.0
    retry_seconds: float = 5.0


def collection_path(namespace: str | None) -> str:
    """REST path of the InferenceService collection (one namespace or all)."""
    base = f"/apis/{GROUP}/{VERSION}"
    return f"{base}/namespaces/{namespace}/{PLURAL}" if namespace else f"{base}/{PLURAL}"


def object_path(obj: dict[str, Any]) -> str:
    """REST path of one InferenceService."""
    meta = obj["metadata"]
    return f"{collection_path(meta.get('namespace', 'default'))}/{meta['name']}"


# the rendered Deployments carry this label (render._labels); the watch selects on it
OWNED_SELECTOR = f"app.kubernetes.io/managed-by={FIELD_MANAGER}"


def deployments_path(namespace: str | None) -> str:
    """REST path of the Deployment collection (one namespace or all)."""
    return (f"/apis/apps/v1/namespaces/{namespace}/deployments" if namespace
            else "/apis/apps/v1/deployments")


def owner_path(deployment: dict[str, Any]) -> str | None:
    """REST path of the InferenceService controlling a Deployment, or None if none does."""
    meta = deployment.get("metadata", {})
    for ref in meta.get("ownerReferences") or []:
        if (ref.get("controller") and ref.get("kind") == KIND
                and ref.get("apiVersion") == API_VERSION):
            return f"{collection_path(meta.get('namespace', 'default'))}/{ref['name']}"
    return None


def ready_condition(ok: bool, reason: str, message: str, generation: int | None) -> dict[str, Any]:
    """The `Reconciled` condition written to status."""
    return condition("Reconciled", ok, reason, message, generation)


class Controller:
    """Keeps every InferenceService's router Deployment and Service as rendered."""

    def __init__(self, client: KubeClient, options: ControllerOptions) -> None:
        self.client = client
        self.options = options
        # the InferenceService and Deployment watches both reconcile; one at a time, so two
        # reconciles of the same object never interleave their apply and status writes
        self._lock = asyncio.Lock()
        # whether the last list of InferenceServices succeeded (the readiness probe's answer)
        self.listed = False

    async def reconcile(self, obj: dict[str, Any]) -> None:
        """Render and apply one InferenceService, then record the outcome in its status."""
        meta = obj["metadata"]
        where = f"{meta.get('namespace', 'default')}/{meta['name']}"
        generation = meta.get("generation")
        try:
            objects = render(obj)
        except InvalidSpec as exc:
            log.warning("InferenceService %s: invalid spec: %s", where, exc)
            await self._status(obj, {"conditions": [ready_condition(False, "InvalidSpec", str(exc),
                                                                     generation)]})
            return
        try:
            results = [await self._apply_if_drifted(desired) for desired in objects]
        except KubeError as exc:
            log.warning("InferenceService %s: apply failed: %s", where, exc)
            await self._status(obj, {"conditions": [ready_condition(False, "ApplyFailed", str(exc),
                                                                     generation)]})
            raise
        name = router_name(meta["name"])
        live = [current for current, _ in results]
        if any(applied for _, applied in results):
            log.info("InferenceService %s: applied Deployment and Service %s", where, name)
        else:
            log.debug("InferenceService %s: Deployment and Service %s up to date", where, name)
        await self._status(obj, desired_status(
            obj, ready_condition(True, "Applied", f"Deployment and Service {name} applied",
                                 generation),
            live[0], int(objects[0]["spec"]["replicas"]),
            f"{name}.{meta.get('namespace', 'default')}.svc"))

    async def _apply_if_drifted(self, desired: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Apply `desired` unless the live object already holds it; (live object, applied?).

        Skipping an apply that would change nothing keeps a resync or a status-only event
        from writing; a changed router env changes the pod template, which Kubernetes rolls out.
        """
        live = await self.client.get(rendered_path(desired))
        if live is not None and contains(live, desired):
            return live, False
        return await self.client.apply(desired, FIELD_MANAGER), True

    async def _status(self, obj: dict[str, Any], status: dict[str, Any]) -> None:
        if not status_changed(obj.get("status"), status):
            return  # nothing new: a write would only wake our own watch
        try:
            await self.client.patch_status(object_path(obj), status)
        except KubeError as exc:
            log.warning("status update of %s failed: %s", obj["metadata"]["name"], exc)

    async def _reconcile_logged(self, obj: dict[str, Any]) -> None:
        try:
            async with self._lock:
                await self.reconcile(obj)
        except KubeError as exc:
            log.debug("reconcile failed: %s", exc)  # logged in reconcile; the resync retries

    async def run_once(self) -> None:
        """One list (reconciling everything), then watch until the watch ends or fails."""
        path = collection_path(self.options.namespace)
        try:
            listing = await self.client.list(path)
        except KubeError:
            self.listed = False
            raise
        self.listed = True
        for item in listing.get("items", []):
            await self._reconcile_logged(item)
        version = str(listing.get("metadata", {}).get("resourceVersion", ""))
        async for event in self.client.watch(path, version, int(self.options.resync_seconds)):
            kind, obj = event.get("type"), event.get("object", {})
            if kind in ("ADDED", "MODIFIED"):
                await self._reconcile_logged(obj)
            elif kind == "ERROR":
                # typically 410 Gone: our resourceVersion is too old; list again
                log.info("watch ended: %s", obj.get("message", obj))
                return
            # DELETED: owner references let the garbage collector remove what we rendered.

    async def on_deployment_event(self, event: dict[str, Any]) -> None:
        """Reconcile the InferenceService owning a changed or deleted Deployment.

        A deleted Deployment is applied again by that reconcile; a status change (pods
        becoming ready) reaches the InferenceService's `Ready` condition.
        """
        if event.get("type") not in ("ADDED", "MODIFIED", "DELETED"):
            return
        path = owner_path(event.get("object", {}))
        if path is None:
            return
        owner = await self.client.get(path)
        if owner is None:
            return  # the InferenceService is gone; the garbage collector follows
        log.debug("Deployment %s: reconciling its owner", event.get("type"))
        await self._reconcile_logged(owner)

    async def watch_deployments_once(self) -> None:
        """List the owned Deployments (for a resourceVersion), then watch them."""
        path = deployments_path(self.options.namespace)
        listing = await self.client.list(path, OWNED_SELECTOR)
        version = str(listing.get("metadata", {}).get("resourceVersion", ""))
        async for event in self.client.watch(path, version, int(self.options.resync_seconds),
                                             OWNED_SELECTOR):
            if event.get("type") == "ERROR":
                log.info("Deployment watch ended: %s", event.get("object"))
                return
            await self.on_deployment_event(event)

    async def _forever(self, what: str, once: Callable[[], Awaitable[None]]) -> None:
        while True:
            try:
                await once()
            except KubeError as exc:
                log.warning("%s: API error: %s; retrying in %.0f s", what, exc,
                            self.options.retry_seconds)
                await asyncio.sleep(self.options.retry_seconds)

    async def run(self) -> None:
        """Run forever: both list+watch loops, re-listing when a watch ends or fails."""
        async with asyncio.TaskGroup() as group:
            group.create_task(self._forever("InferenceServices", self.run_once))
            group.create_task(self._forever("Deployments", self.watch_deployments_once))

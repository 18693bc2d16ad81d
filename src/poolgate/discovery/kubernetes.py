"""Endpoints from the Kubernetes API: the Ready pods an InferencePool's selector matches.

`PodCache` is plain data (an `EndpointSource` over the pods last seen per namespace);
`PodWatcher` keeps it current with one list + watch loop per namespace the configuration's pools
live in, and calls `on_change` after every change that matters to endpoints (the gateway then
rebuilds its snapshot). A pod is an endpoint while it has an IP, its `Ready` condition is
`True` and it is not being deleted; its address is `podIP:targetPort`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from poolgate._aio import cancel_and_wait
from poolgate.core.pools import Endpoint
from poolgate.discovery.local import selector_matches
from poolgate.kube import KubeClient, KubeError

log = logging.getLogger(__name__)

# Relist after a watch ends or fails: at once after a clean end, with backoff after errors.
_BACKOFF_MIN = 0.5
_BACKOFF_MAX = 30.0
_WATCH_SECONDS = 300


@dataclass(frozen=True, slots=True)
class Pod:
    """What endpoint discovery needs of one pod."""

    namespace: str
    name: str
    labels: Mapping[str, str]
    ip: str | None
    ready: bool

    @property
    def serving(self) -> bool:
        """Whether the pod is an endpoint: Ready, with an IP."""
        return self.ready and bool(self.ip)


def pod_from(obj: Mapping[str, Any]) -> Pod:
    """The `Pod` of an API object (a list item or a watch event's object)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    conditions = status.get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    if meta.get("deletionTimestamp"):
        ready = False  # terminating: Kubernetes takes it out of Service endpoints too
    labels = meta.get("labels") or {}
    return Pod(str(meta.get("namespace", "")), str(meta.get("name", "")),
               MappingProxyType({str(k): str(v) for k, v in labels.items()}),
               status.get("podIP") or None, ready)


class PodCache:
    """The pods last seen in each watched namespace; answers `endpoints_for` like LocalEndpoints."""

    def __init__(self) -> None:
        self._pods: dict[str, dict[str, Pod]] = {}

    def replace(self, namespace: str, pods: Iterable[Pod]) -> bool:
        """Set a namespace's pods from a list; True when its endpoints changed."""
        before = self._serving(namespace)
        self._pods[namespace] = {p.name: p for p in pods}
        return self._serving(namespace) != before

    def apply(self, event_type: str, pod: Pod) -> bool:
        """Apply one watch event (ADDED, MODIFIED, DELETED); True when endpoints changed."""
        pods = self._pods.setdefault(pod.namespace, {})
        old = pods.get(pod.name)
        if event_type == "DELETED":
            pods.pop(pod.name, None)
            return old is not None and old.serving
        pods[pod.name] = pod
        if old is None:
            return pod.serving
        return (old.serving, old.ip, old.labels) != (pod.serving, pod.ip, pod.labels)

    def copy(self) -> PodCache:
        """An independent copy (a snapshot build reads it in a worker thread while the watch
        keeps changing this one)."""
        other = PodCache()
        other._pods = {ns: dict(pods) for ns, pods in self._pods.items()}
        return other

    def forget(self, namespace: str) -> None:
        """Drop a namespace that is no longer watched."""
        self._pods.pop(namespace, None)

    def _serving(self, namespace: str) -> set[tuple[str, str | None, tuple[tuple[str, str], ...]]]:
        return {(p.name, p.ip, tuple(sorted(p.labels.items())))
                for p in self._pods.get(namespace, {}).values() if p.serving}

    def endpoints_for(self, namespace: str, selector: Mapping[str, str],
                      target_port: int) -> tuple[Endpoint, ...]:
        """Ready pods of `namespace` matching `selector`, by pod name, as `podIP:target_port`."""
        out: dict[str, Endpoint] = {}
        pods = self._pods.get(namespace, {})
        for name in sorted(pods):
            pod = pods[name]
            if pod.serving and pod.ip and selector_matches(selector, pod.labels):
                ep = Endpoint(pod.ip, target_port, pod.labels)
                out.setdefault(ep.address, ep)
        return tuple(out.values())


class PodWatcher:
    """Keeps a `PodCache` current: list, then watch, per namespace; relists on any break."""

    def __init__(self, client: KubeClient, cache: PodCache, on_change: Callable[[], None],
                 *, seed: int | None = None) -> None:
        self.client = client
        self.cache = cache
        self.on_change = on_change
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._synced: dict[str, asyncio.Event] = {}
        self._rng = random.Random(seed)

    @property
    def namespaces(self) -> list[str]:
        """The namespaces being watched."""
        return sorted(self._tasks)

    def watch_namespaces(self, namespaces: Iterable[str]) -> None:
        """Watch exactly `namespaces` from now on (in a running event loop)."""
        wanted = set(namespaces)
        for ns in [n for n in self._tasks if n not in wanted]:
            self._tasks.pop(ns).cancel()
            self._synced.pop(ns, None)
            self.cache.forget(ns)
        loop = asyncio.get_running_loop()
        for ns in sorted(wanted - set(self._tasks)):
            self._synced[ns] = asyncio.Event()
            self._tasks[ns] = loop.create_task(self._run(ns), name=f"poolgate-pods:{ns}")

    async def wait_synced(self, timeout: float) -> bool:
        """Wait until every watched namespace was listed once; False when `timeout` ran out."""
        events = list(self._synced.values())
        try:
            async with asyncio.timeout(timeout):
                for event in events:
                    await event.wait()
        except TimeoutError:
            return False
        return True

    async def close(self) -> None:
        """Stop every watch."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        await cancel_and_wait(tasks)

    async def _run(self, namespace: str) -> None:
        path = f"/api/v1/namespaces/{namespace}/pods"
        backoff = _BACKOFF_MIN
        failing = False
        while True:
            try:
                listed = await self.client.list(path)
                items = listed.get("items") or []
                if self.cache.replace(namespace, (pod_from(i) for i in items)):
                    self.on_change()
                self._synced[namespace].set()
                if failing:
                    log.info("pod discovery in namespace %s recovered", namespace)
                    failing = False
                version = str((listed.get("metadata") or {}).get("resourceVersion", ""))
                async with contextlib.aclosing(
                        self.client.watch(path, version, _WATCH_SECONDS)) as events:
                    async for event in events:
                        kind = event.get("type")
                        if kind == "ERROR":
                            # Usually 410 Gone: the version is too old; list again.
                            break
                        if kind == "BOOKMARK":
                            continue
                        if self.cache.apply(str(kind), pod_from(event.get("object") or {})):
                            self.on_change()
                backoff = _BACKOFF_MIN
                continue
            except (KubeError, ValueError, TypeError, AttributeError) as e:
                # API errors, and answers that are not the JSON a pod list or watch event is:
                # either way the loop lists again later rather than stop watching this namespace.
                if not failing:
                    log.warning("pod discovery in namespace %s failing (the last pods seen "
                                "stay in use): %s: %s", namespace, type(e).__name__, e)
                    failing = True
            await asyncio.sleep(backoff * self._rng.uniform(0.8, 1.2))
            backoff = min(_BACKOFF_MAX, backoff * 2)

"""Pods from the Kubernetes API as endpoints: readiness, deletion, selectors, watch events."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from poolgate.discovery.kubernetes import PodCache, PodWatcher, pod_from


def pod(name: str, *, ip: str | None = "10.0.0.1", ready: bool = True, ns: str = "ml",
        labels: dict[str, str] | None = None, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "labels": labels or {"app": "vllm"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-11-24T19:00:00Z"
    status: dict[str, Any] = {"conditions": [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Ready", "status": "True" if ready else "False"}]}
    if ip is not None:
        status["podIP"] = ip
    return {"metadata": meta, "status": status}


@pytest.mark.parametrize(("obj", "serving"), [
    pytest.param(pod("a"), True, id="ready"),
    pytest.param(pod("a", ready=False), False, id="not-ready"),
    pytest.param(pod("a", ip=None), False, id="no-ip-yet"),
    pytest.param(pod("a", deleting=True), False, id="terminating"),
    pytest.param({"metadata": {"name": "a", "namespace": "ml"}}, False, id="no-status"),
])
def test_pod_serving(obj: dict[str, Any], serving: bool) -> None:
    assert pod_from(obj).serving is serving


def test_endpoints_are_ready_matching_pods_by_name_on_the_target_port() -> None:
    cache = PodCache()
    assert cache.replace("ml", [pod_from(p) for p in [
        pod("b", ip="10.0.0.2"), pod("a", ip="10.0.0.1"),
        pod("c", ip="10.0.0.3", ready=False),
        pod("d", ip="10.0.0.4", labels={"app": "other"}),
    ]])
    eps = cache.endpoints_for("ml", {"app": "vllm"}, 8000)
    assert [e.address for e in eps] == ["10.0.0.1:8000", "10.0.0.2:8000"]
    assert eps[0].labels == {"app": "vllm"}
    assert cache.endpoints_for("other-ns", {"app": "vllm"}, 8000) == ()


def test_watch_events_report_only_changes_that_matter() -> None:
    cache = PodCache()
    assert cache.replace("ml", []) is False
    assert cache.apply("ADDED", pod_from(pod("a", ready=False))) is False  # not serving yet
    assert cache.apply("MODIFIED", pod_from(pod("a"))) is True  # became Ready
    assert cache.apply("MODIFIED", pod_from(pod("a"))) is False  # a status heartbeat
    assert cache.apply("MODIFIED", pod_from(pod("a", ip="10.0.0.9"))) is True
    assert [e.address for e in cache.endpoints_for("ml", {}, 80)] == ["10.0.0.9:80"]
    copy = cache.copy()
    assert cache.apply("DELETED", pod_from(pod("a", ip="10.0.0.9"))) is True
    assert cache.endpoints_for("ml", {}, 80) == ()
    assert [e.address for e in copy.endpoints_for("ml", {}, 80)] == ["10.0.0.9:80"]
    assert cache.apply("DELETED", pod_from(pod("a"))) is False  # already gone
    cache.apply("ADDED", pod_from(pod("b")))
    cache.forget("ml")
    assert cache.endpoints_for("ml", {}, 80) == ()


class _FlakyApi:
    """A stand-in for KubeClient: lists from a script, and a watch that breaks off with a bad line."""

    def __init__(self, lists: list[list[dict[str, Any]]]) -> None:
        self.lists = lists
        self.calls = 0

    async def list(self, path: str) -> dict[str, Any]:
        items = self.lists[min(self.calls, len(self.lists) - 1)]
        self.calls += 1
        return {"items": items, "metadata": {"resourceVersion": str(self.calls)}}

    async def watch(self, path: str, resource_version: str,
                    timeout_seconds: int = 300) -> AsyncGenerator[dict[str, Any], None]:
        yield {"type": "BOOKMARK", "object": {}}
        if self.calls == 1:
            raise ValueError("unexpected character")  # what orjson says of a broken line
        await asyncio.Event().wait()  # a quiet watch


async def test_a_broken_watch_lists_again_instead_of_stopping() -> None:
    api = _FlakyApi([[pod("a", ip="10.0.0.1")], [pod("a", ip="10.0.0.1"), pod("b", ip="10.0.0.2")]])
    cache = PodCache()
    changes: list[int] = []
    watcher = PodWatcher(api, cache, lambda: changes.append(1), seed=1)  # type: ignore[arg-type]
    watcher.watch_namespaces(["ml"])
    try:
        assert await watcher.wait_synced(5.0)
        for _ in range(100):
            if api.calls >= 2:
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.05)
        assert [e.address for e in cache.endpoints_for("ml", {}, 80)] == ["10.0.0.1:80",
                                                                          "10.0.0.2:80"]
        assert len(changes) == 2
        assert watcher.namespaces == ["ml"]
    finally:
        await watcher.close()

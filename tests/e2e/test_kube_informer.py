"""`Reflector` (list+watch of one resource type) against the fake API server over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest

from poolgate.kube.client import KubeClient, KubeCredentials
from poolgate.kube.informer import Reflector
from poolgate.kube.resources import HTTP_ROUTES, INFERENCE_OBJECTIVES
from tests.support.fake_kube import FakeKubeApi, serve_fake_kube

pytestmark = pytest.mark.e2e


def route(name: str, namespace: str = "ml") -> dict[str, Any]:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"parentRefs": [{"name": "gw"}]}}


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeKubeApi, KubeClient]]:
    api = FakeKubeApi(bookmark_interval=0.2).register_defaults()
    async with serve_fake_kube(api) as port, aiohttp.ClientSession() as session:
        yield api, KubeClient(KubeCredentials(f"http://127.0.0.1:{port}"), session)


async def until(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"never saw {what}"
        await asyncio.sleep(0.02)


def names(r: Reflector) -> set[str]:
    return {name for _, name in r.objects}


async def test_list_then_watch_and_resume_without_relisting(
        fake: tuple[FakeKubeApi, KubeClient]) -> None:
    api, client = fake
    api.apply(route("a"))
    changes: list[int] = []
    r = Reflector(client, HTTP_ROUTES, "ml", lambda: changes.append(1), seed=1, watch_seconds=1)
    r.start()
    try:
        await asyncio.wait_for(r.synced.wait(), 5)
        assert names(r) == {"a"} and len(changes) == 1
        api.apply(route("b"))
        api.apply(route("elsewhere", namespace="other"))
        await until(lambda: names(r) == {"a", "b"}, "b added")
        # The server ends each watch after timeoutSeconds=1: the reflector resumes from the last
        # version it saw (bookmarks included), without listing again.
        await until(lambda: api.watch_count(HTTP_ROUTES.collection("ml")) >= 3, "resumed watches")
        assert api.list_count(HTTP_ROUTES.collection("ml")) == 1
        watches = [rec for rec in api.matching("GET", HTTP_ROUTES.collection("ml"))
                   if rec.is_watch]
        assert all(w.query.get("allowWatchBookmarks") == "true" for w in watches)
        assert int(watches[-1].query["resourceVersion"]) >= int(watches[0].query["resourceVersion"])
        api.delete("gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "a")
        await until(lambda: names(r) == {"b"}, "a deleted")
    finally:
        await r.close()


async def test_expired_version_relists_and_errors_back_off(
        fake: tuple[FakeKubeApi, KubeClient]) -> None:
    api, client = fake
    api.apply(route("a"))
    r = Reflector(client, HTTP_ROUTES, None, lambda: None, seed=1)
    r.start()
    try:
        await asyncio.wait_for(r.synced.wait(), 5)
        path = HTTP_ROUTES.collection()
        await until(lambda: api.open_watches(path) == 1, "the watch")
        # The watch breaks, changes happen meanwhile and the history is compacted: the resumed
        # watch gets 410 Expired, and the reflector lists again.
        api.fail("GET", path, 500, times=2)
        api.break_watches()
        api.apply(route("b"))
        api.compact()
        await until(lambda: names(r) == {"a", "b"}, "the relist after 410", timeout=15)
        assert api.list_count(path) >= 2
        failed = [rec for rec in api.matching("GET", path) if rec.status == 500]
        assert len(failed) == 2
    finally:
        await r.close()


async def test_a_missing_crd_is_retried_until_installed(
        fake: tuple[FakeKubeApi, KubeClient], caplog: pytest.LogCaptureFixture) -> None:
    api, client = fake
    api.unregister(INFERENCE_OBJECTIVES)
    r = Reflector(client, INFERENCE_OBJECTIVES, None, lambda: None, seed=1, missing_retry=0.5)
    r.start()
    try:
        await asyncio.wait_for(r.synced.wait(), 5)  # missing counts as synced (and empty)
        assert r.missing and not r.objects
        assert any("is its CRD installed" in m for m in caplog.messages)
        api.register(INFERENCE_OBJECTIVES)
        api.apply({"apiVersion": "inference.networking.x-k8s.io/v1alpha2",
                   "kind": "InferenceObjective", "metadata": {"name": "o", "namespace": "ml"},
                   "spec": {"priority": 1, "poolRef": {"name": "pool"}}})
        await until(lambda: names(r) == {"o"}, "the objective once the CRD exists")
        assert not r.missing
    finally:
        await r.close()

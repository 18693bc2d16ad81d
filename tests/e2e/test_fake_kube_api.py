"""The fake Kubernetes API server (tests/support/fake_kube.py) behaves as kube-apiserver does,
driven over HTTP by poolgate's own KubeClient and by plain aiohttp."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from poolgate.kube import KubeClient, KubeCredentials, KubeError, kubeconfig_credentials
from poolgate.kube.resources import CONFIG_MAPS, INFERENCE_POOLS, LEASES, PODS
from tests.support.fake_kube import (
    DEPLOYMENTS,
    FakeKubeApi,
    serve_fake_kube,
    write_kubeconfig,
)

pytestmark = pytest.mark.e2e

TOKEN = "fake-token"
POOLS = INFERENCE_POOLS.collection("ml")
POOL = INFERENCE_POOLS.object_path("ml", "llama")
MERGE = "application/merge-patch+json"
APPLY = "application/apply-patch+yaml"


def pool(name: str = "llama", **spec: Any) -> dict[str, Any]:
    return {"apiVersion": INFERENCE_POOLS.api_version, "kind": "InferencePool",
            "metadata": {"name": name, "namespace": "ml", "labels": {"app": name}},
            "spec": {"targetPorts": [{"number": 8000}], **spec}}


@dataclass
class Kube:
    api: FakeKubeApi
    client: KubeClient
    session: aiohttp.ClientSession
    base: str

    async def call(self, method: str, path: str, body: Any = None,
                   content_type: str = "application/json", token: str | None = TOKEN,
                   **params: str) -> tuple[int, Any]:
        headers = {"Content-Type": content_type}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        async with self.session.request(method, self.base + path, params=params, headers=headers,
                                        data=None if body is None else orjson.dumps(body)) as r:
            raw = await r.read()
            return r.status, orjson.loads(raw) if raw else None


@pytest.fixture
async def kube() -> AsyncIterator[Kube]:
    api = FakeKubeApi(token=TOKEN, bookmark_interval=0.1).register_defaults()
    async with serve_fake_kube(api) as port, aiohttp.ClientSession() as session:
        base = f"http://127.0.0.1:{port}"
        yield Kube(api, KubeClient(KubeCredentials(base, TOKEN), session), session, base)


async def take(events: AsyncGenerator[dict[str, Any], None], n: int,
               timeout: float = 3.0) -> list[dict[str, Any]]:
    """The next `n` events that are not bookmarks."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(timeout):
        while len(out) < n:
            event = await anext(events)
            if event["type"] != "BOOKMARK":
                out.append(event)
    return out


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"]["metadata"]["name"]) for e in events]


async def test_list_then_watch_resumes_from_the_lists_resource_version(kube: Kube) -> None:
    kube.api.apply(pool("a"))
    kube.api.apply(pool("b"))
    listed = await kube.client.list(POOLS)
    assert listed["kind"] == "InferencePoolList"
    assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "b"]
    assert all(i["kind"] == "InferencePool" for i in listed["items"])
    first = listed["items"][0]["metadata"]
    assert first["uid"] and first["generation"] == 1 and first["creationTimestamp"].endswith("Z")
    list_rv = listed["metadata"]["resourceVersion"]
    assert list_rv == kube.api.resource_version

    kube.api.apply(pool("a", endpointPickerRef={"name": "epp"}))  # after the list
    kube.api.delete(INFERENCE_POOLS.api_version, "InferencePool", "ml", "b")
    async with contextlib.aclosing(kube.client.watch(POOLS, list_rv)) as events:
        seen = await take(events, 2)
        assert summary(seen) == [("MODIFIED", "a"), ("DELETED", "b")]
        rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
        assert int(list_rv) < rvs[0] < rvs[1] == int(kube.api.resource_version)
        kube.api.apply(pool("c"))  # live
        assert summary(await take(events, 1)) == [("ADDED", "c")]

    # from "0": the current objects as synthetic ADDED events
    async with contextlib.aclosing(kube.client.watch(POOLS, "0")) as events:
        assert summary(await take(events, 2)) == [("ADDED", "a"), ("ADDED", "c")]
    assert kube.api.list_count(POOLS) == 1
    assert kube.api.watch_count(POOLS) == 2
    resumed = [r.query["resourceVersion"] for r in kube.api.requests if r.is_watch]
    assert resumed == [list_rv, "0"]


async def test_bookmarks_carry_the_latest_resource_version(kube: Kube) -> None:
    async with contextlib.aclosing(kube.client.watch(POOLS, kube.api.resource_version)) as events:
        async with asyncio.timeout(2):
            bookmark = await anext(events)
        assert bookmark == {"type": "BOOKMARK", "object": {
            "kind": "InferencePool", "apiVersion": "inference.networking.k8s.io/v1",
            "metadata": {"resourceVersion": kube.api.resource_version}}}
        kube.api.apply({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": "other", "namespace": "ml"}})
        async with asyncio.timeout(2):
            bookmark = await anext(events)  # a write of another type moves it on too
        assert bookmark["object"]["metadata"]["resourceVersion"] == kube.api.resource_version


async def test_a_watch_from_before_a_compaction_gets_410_expired(kube: Kube) -> None:
    kube.api.apply(pool())
    old = kube.api.resource_version
    kube.api.apply(pool(endpointPickerRef={"name": "epp"}))
    kube.api.compact()
    now = kube.api.resource_version
    async with contextlib.aclosing(kube.client.watch(POOLS, old)) as events:
        async with asyncio.timeout(2):
            received = [e async for e in events]  # exactly one event, then the stream ends
    assert received == [{"type": "ERROR", "object": {
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": f"too old resource version: {old} ({now})", "reason": "Expired",
        "code": 410}}]
    assert kube.api.matching("GET", POOLS)[-1].status == 200
    # from the compaction point on, nothing was lost
    async with contextlib.aclosing(kube.client.watch(POOLS, now)) as events:
        kube.api.apply(pool("b"))
        assert summary(await take(events, 1)) == [("ADDED", "b")]


async def test_the_status_subresource_is_written_apart_from_the_object(kube: Kube) -> None:
    created = await kube.client.create(POOLS, {**pool(), "status": {"parents": ["ignored"]}})
    assert "status" not in created  # create cannot set status

    await kube.client.patch_status(POOL, {"parents": [{"parentRef": {"name": "gw"}}]})
    after_status = await kube.client.get(POOL)
    assert after_status is not None
    assert after_status["status"] == {"parents": [{"parentRef": {"name": "gw"}}]}
    assert after_status["spec"] == created["spec"]
    assert after_status["metadata"]["generation"] == 1
    assert int(after_status["metadata"]["resourceVersion"]) > int(
        created["metadata"]["resourceVersion"])

    # a write of the object ignores the status it carries
    edited = {**after_status, "spec": {**after_status["spec"], "endpointPickerRef": {"name": "e"}},
              "status": {"parents": []}}
    replaced = await kube.client.replace(POOL, edited)
    assert replaced["status"] == after_status["status"]
    assert replaced["metadata"]["generation"] == 2

    # metadata alone does not bump generation; a status write cannot change the spec
    code, labelled = await kube.call("PATCH", POOL, {"metadata": {"labels": {"x": "y"}}}, MERGE)
    assert code == 200 and labelled["metadata"]["generation"] == 2
    code, status_put = await kube.call("PUT", POOL + "/status", {
        **labelled, "spec": {"targetPorts": []}, "status": {"parents": [{"n": 1}]}})
    assert code == 200
    assert status_put["spec"] == replaced["spec"]
    assert status_put["status"] == {"parents": [{"n": 1}]}
    assert status_put["metadata"]["generation"] == 2
    code, got = await kube.call("GET", POOL + "/status")
    assert code == 200 and got == status_put


async def test_a_write_that_changes_nothing_is_not_a_write(kube: Kube) -> None:
    kube.api.apply(pool())
    await kube.client.patch_status(POOL, {"parents": []})
    rv = kube.api.resource_version
    await kube.client.patch_status(POOL, {"parents": []})
    await kube.call("PATCH", POOL, {"spec": {"targetPorts": [{"number": 8000}]}}, MERGE)
    assert kube.api.resource_version == rv
    assert len(kube.api.matching("PATCH", POOL + "/status")) == 2  # both were recorded


async def test_merge_patch_and_json_patch(kube: Kube) -> None:
    kube.api.apply(pool(extra={"a": 1, "b": 2}))
    code, patched = await kube.call("PATCH", POOL, {"spec": {"extra": {"a": None, "c": 3}}}, MERGE)
    assert code == 200
    assert patched["spec"]["extra"] == {"b": 2, "c": 3}
    assert patched["metadata"]["generation"] == 2
    code, patched = await kube.call("PATCH", POOL, [
        {"op": "test", "path": "/spec/extra/b", "value": 2},
        {"op": "replace", "path": "/spec/extra/b", "value": 5},
        {"op": "add", "path": "/metadata/labels/tier", "value": "gold"}],
        "application/json-patch+json")
    assert code == 200
    assert patched["spec"]["extra"] == {"b": 5, "c": 3}
    assert patched["metadata"]["labels"] == {"app": "llama", "tier": "gold"}
    # a merge patch carrying a stale resourceVersion is refused
    code, status = await kube.call("PATCH", POOL, {"metadata": {"resourceVersion": "1"}}, MERGE)
    assert (code, status["reason"]) == (409, "Conflict")
    code, status = await kube.call("PATCH", INFERENCE_POOLS.object_path("ml", "nope"), {}, MERGE)
    assert (code, status["reason"]) == (404, "NotFound")
    assert status["message"] == 'inferencepools.inference.networking.k8s.io "nope" not found'
    code, status = await kube.call("PATCH", POOL, {}, "application/strategic-merge-patch+json")
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")


async def test_server_side_apply_creates_then_updates_by_field_manager(kube: Kube) -> None:
    deployment: dict[str, Any] = {"apiVersion": "apps/v1", "kind": "Deployment",
                  "metadata": {"name": "router", "namespace": "ml",
                               "labels": {"app": "router", "old": "x"}},
                  "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "r"}]}}}}
    path = DEPLOYMENTS.object_path("ml", "router")
    code, created = await kube.call("PATCH", path, deployment, APPLY, fieldManager="operator",
                                    force="true")
    assert code == 201 and created["metadata"]["generation"] == 1
    # another writer's field survives the operator's next apply; the operator's dropped label goes
    await kube.call("PATCH", path, {"metadata": {"annotations": {"note": "hand"}}}, MERGE)
    del deployment["metadata"]["labels"]["old"]
    deployment["spec"]["replicas"] = 3
    applied = await kube.client.apply(deployment, "operator")
    assert applied["metadata"]["labels"] == {"app": "router"}
    assert applied["metadata"]["annotations"] == {"note": "hand"}
    assert applied["spec"]["replicas"] == 3 and applied["metadata"]["generation"] == 2
    managers = kube.api.field_managers("apps/v1", "Deployment", "ml", "router")
    assert ".spec.replicas" in managers["operator"]
    assert ".metadata.annotations.note" in managers["Python"]  # from aiohttp's User-Agent

    # without force, a field another manager owns with another value is a conflict
    code, status = await kube.call("PATCH", path, {**deployment, "spec": {"replicas": 9}}, APPLY,
                                   fieldManager="intruder")
    assert (code, status["reason"]) == (409, "Conflict")
    assert 'conflict with "operator": .spec.replicas' in status["message"]
    code, status = await kube.call("PATCH", path, deployment, APPLY)
    assert (code, status["reason"]) == (400, "BadRequest")


async def test_put_needs_the_current_resource_version(kube: Kube) -> None:
    lease_path = LEASES.object_path("ml", "leader")
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
             "metadata": {"name": "leader", "namespace": "ml"}, "spec": {"holderIdentity": "a"}}
    created = await kube.client.create(LEASES.collection("ml"), lease)
    renewed = await kube.client.replace(lease_path, {**created, "spec": {
        "holderIdentity": "a", "renewTime": "2026-01-01T00:00:00.000000Z"}})
    with pytest.raises(KubeError) as raised:  # b read the Lease before a renewed it
        await kube.client.replace(lease_path, {**created, "spec": {"holderIdentity": "b"}})
    assert raised.value.status == 409
    assert "the object has been modified" in str(raised.value)
    current = kube.api.get("coordination.k8s.io/v1", "Lease", "ml", "leader")
    assert current == renewed and current["spec"]["holderIdentity"] == "a"
    code, status = await kube.call("POST", LEASES.collection("ml"), lease)
    assert (code, status["reason"]) == (409, "AlreadyExists")
    # a Lease may be created by PUT; a custom resource may not, and needs a resourceVersion
    code, _ = await kube.call("PUT", LEASES.object_path("ml", "other"),
                              {**lease, "metadata": {"name": "other"}})
    assert code == 201
    kube.api.apply(pool())
    code, status = await kube.call("PUT", INFERENCE_POOLS.object_path("ml", "b"), pool("b"))
    assert code == 404
    code, status = await kube.call("PUT", POOL, pool())
    assert (code, status["reason"]) == (422, "Invalid")
    code, status = await kube.call("POST", POOLS, {**pool("x"), "metadata": {
        "name": "x", "namespace": "elsewhere"}})
    assert (code, status["reason"]) == (400, "BadRequest")


async def test_an_unregistered_type_is_404_until_registered(kube: Kube) -> None:
    kube.api.unregister(INFERENCE_POOLS)
    code, status = await kube.call("GET", POOLS)
    assert code == 404
    assert status == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "the server could not find the requested resource",
                      "reason": "NotFound", "details": {}, "code": 404}
    assert (await kube.call("GET", "/apis/inference.networking.k8s.io/v1"))[0] == 404
    kube.api.register(INFERENCE_POOLS)
    code, listed = await kube.call("GET", POOLS)
    assert code == 200 and listed["items"] == []
    code, discovery = await kube.call("GET", "/apis/inference.networking.k8s.io/v1")
    assert code == 200
    assert [r["name"] for r in discovery["resources"]] == ["inferencepools",
                                                            "inferencepools/status"]


async def test_label_and_field_selectors_filter_lists_and_watches(kube: Kube) -> None:
    for name, tier in (("a", "gold"), ("b", "silver"), ("c", None)):
        labels = {"app": name, **({"tier": tier} if tier else {})}
        kube.api.apply({**pool(name), "metadata": {"name": name, "namespace": "ml",
                                                   "labels": labels}})
    kube.api.apply({**pool("d"), "metadata": {"name": "d", "namespace": "other"}})

    async def names(**params: str) -> list[str]:
        code, listed = await kube.call("GET", INFERENCE_POOLS.collection(None), **params)
        assert code == 200, listed
        return [i["metadata"]["name"] for i in listed["items"]]

    assert await names() == ["a", "b", "c", "d"]  # across namespaces
    assert await names(labelSelector="tier=gold") == ["a"]
    assert await names(labelSelector="tier!=gold") == ["b", "c", "d"]
    assert await names(labelSelector="tier") == ["a", "b"]
    assert await names(labelSelector="!tier,app") == ["c"]
    assert await names(labelSelector="tier in (gold,silver),app!=a") == ["b"]
    assert await names(fieldSelector="metadata.namespace=other") == ["d"]
    assert await names(fieldSelector="metadata.name!=a,metadata.namespace==ml") == ["b", "c"]
    assert (await kube.call("GET", POOLS, labelSelector="a b"))[0] == 400
    assert (await kube.call("GET", POOLS, fieldSelector="spec.x=1"))[0] == 400

    # an object entering the selection is ADDED, one leaving it DELETED
    watch = kube.client.watch(POOLS, kube.api.resource_version, label_selector="tier=gold")
    async with contextlib.aclosing(watch) as events:
        await kube.call("PATCH", INFERENCE_POOLS.object_path("ml", "b"),
                        {"metadata": {"labels": {"tier": "gold"}}}, MERGE)
        await kube.call("PATCH", INFERENCE_POOLS.object_path("ml", "a"),
                        {"metadata": {"labels": {"tier": None}}}, MERGE)
        await kube.call("PATCH", INFERENCE_POOLS.object_path("ml", "c"), {"spec": {"x": 1}}, MERGE)
        kube.api.apply(pool("e"))
        await kube.call("PATCH", INFERENCE_POOLS.object_path("ml", "b"), {"spec": {"x": 1}}, MERGE)
        assert summary(await take(events, 3)) == [
            ("ADDED", "b"), ("DELETED", "a"), ("MODIFIED", "b")]


async def test_pagination_with_limit_and_continue(kube: Kube) -> None:
    for name in "abcde":
        kube.api.apply(pool(name))
    code, page = await kube.call("GET", POOLS, limit="2")
    assert code == 200
    assert [i["metadata"]["name"] for i in page["items"]] == ["a", "b"]
    assert page["metadata"]["remainingItemCount"] == 3
    code, page = await kube.call("GET", POOLS, limit="5",
                                 **{"continue": page["metadata"]["continue"]})
    assert code == 200
    assert [i["metadata"]["name"] for i in page["items"]] == ["c", "d", "e"]
    assert "continue" not in page["metadata"]


async def test_a_request_without_the_token_is_401(kube: Kube) -> None:
    code, status = await kube.call("GET", POOLS, token=None)
    assert (code, status["reason"], status["kind"]) == (401, "Unauthorized", "Status")
    assert (await kube.call("GET", POOLS, token="wrong"))[0] == 401
    assert kube.api.requests[-1].status == 401
    assert kube.api.requests[-1].user_agent and "aiohttp" in kube.api.requests[-1].user_agent


async def test_injected_failures_hit_the_next_matching_requests_only(kube: Kube) -> None:
    kube.api.fail("GET", POOLS, 503, times=2)
    kube.api.fail("PATCH", "/apis/", 429)
    for _ in range(2):
        with pytest.raises(KubeError) as raised:
            await kube.client.list(POOLS)
        assert raised.value.status == 503
    assert (await kube.client.list(POOLS))["items"] == []
    code, status = await kube.call("PATCH", POOL, {}, MERGE)
    assert (code, status["reason"]) == (429, "TooManyRequests")
    assert (await kube.call("PATCH", POOL, {}, MERGE))[0] == 404  # the real answer again
    assert [r.status for r in kube.api.matching("GET", POOLS)] == [503, 503, 200]


async def test_break_watches_drops_the_stream_and_timeouts_end_it_cleanly(kube: Kube) -> None:
    async with contextlib.aclosing(kube.client.watch(POOLS, "0")) as events:
        first = asyncio.ensure_future(take(events, 1))  # the request goes out on first read
        await kube.api.wait_for_watch(POOLS)
        kube.api.break_watches()
        with pytest.raises(KubeError) as raised:
            await first
        assert raised.value.status == 0  # a dropped connection, as when the server restarts
    await asyncio.sleep(0.05)
    assert kube.api.open_watches() == 0

    async with contextlib.aclosing(kube.client.watch(POOLS, "0", timeout_seconds=1)) as events:
        async with asyncio.timeout(3):
            assert [e["type"] async for e in events if e["type"] != "BOOKMARK"] == []


async def test_deletion_waits_for_finalizers(kube: Kube) -> None:
    kube.api.apply({**pool(), "metadata": {"name": "llama", "namespace": "ml",
                                           "finalizers": ["poolgate.dev/cleanup"]}})
    async with contextlib.aclosing(kube.client.watch(POOLS, kube.api.resource_version)) as events:
        code, deleting = await kube.call("DELETE", POOL)
        assert code == 200 and deleting["metadata"]["deletionTimestamp"]
        assert kube.api.get(INFERENCE_POOLS.api_version, "InferencePool", "ml", "llama")
        await kube.call("PATCH", POOL, {"metadata": {"finalizers": None}}, MERGE)
        seen = await take(events, 3)
        assert summary(seen) == [("MODIFIED", "llama"), ("MODIFIED", "llama"),
                                 ("DELETED", "llama")]
    assert (await kube.call("GET", POOL))[0] == 404
    assert (await kube.call("DELETE", POOL))[0] == 404


async def test_in_process_apply_yaml_and_set_status(kube: Kube) -> None:
    applied = kube.api.apply_yaml("""
apiVersion: v1
kind: Pod
metadata: {name: p1, labels: {app: vllm}}
spec: {containers: [{name: vllm}]}
status: {phase: Running}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: c1, namespace: ml}
data: {k: v}
""")
    assert [o["metadata"]["namespace"] for o in applied] == ["default", "ml"]
    assert "status" not in applied[0]  # kubectl apply does not set a status
    kube.api.set_status("v1", "Pod", "default", "p1", {"phase": "Running", "podIP": "10.0.0.1"})
    pods = await kube.client.list(PODS.collection("default"), label_selector="app=vllm")
    assert pods["items"][0]["status"]["podIP"] == "10.0.0.1"
    assert pods["items"][0]["metadata"]["generation"] == 1
    assert kube.api.objects("v1", "ConfigMap")[0]["data"] == {"k": "v"}
    assert (await kube.client.get(CONFIG_MAPS.object_path("ml", "c1"))) is not None


async def test_kubeconfig_points_at_the_fake(tmp_path: Path) -> None:
    api = FakeKubeApi(token=TOKEN).register_defaults()
    path = write_kubeconfig(tmp_path, 1234, token=TOKEN, namespace="ml")
    credentials = kubeconfig_credentials(path)
    assert credentials == KubeCredentials("http://127.0.0.1:1234", TOKEN, None, "ml")
    async with serve_fake_kube(api) as port, aiohttp.ClientSession() as session:
        credentials = kubeconfig_credentials(write_kubeconfig(tmp_path / "k", port, TOKEN))
        assert (await KubeClient(credentials, session).list(POOLS))["items"] == []


async def test_a_watch_ends_cleanly_when_the_server_stops() -> None:
    api = FakeKubeApi().register_defaults()
    async with aiohttp.ClientSession() as session:
        async with serve_fake_kube(api) as port:
            client = KubeClient(KubeCredentials(f"http://127.0.0.1:{port}"), session)
            events = client.watch(POOLS, "0")
            pending = asyncio.ensure_future(anext(events))
            await api.wait_for_watch(POOLS)
        with pytest.raises(StopAsyncIteration):
            async with asyncio.timeout(2):
                await pending
        await events.aclose()

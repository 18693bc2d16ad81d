"""`poolgate operator` against a fake Kubernetes API server written here.

No cluster is available in tests, so the API server is a small aiohttp app in this test (not a
poolgate component): it serves the InferenceService list and watch, and records the server-side
apply and status patches the real operator process sends.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from poolgate.operator.render import render
from tests.support.apps import serve_app
from tests.support.processes import ProcessGroup, free_port, poolgate_command

pytestmark = pytest.mark.e2e

TOKEN = "test-token-123"
ISVC_PATH = "/apis/poolgate.dev/v1alpha1/namespaces/ml/inferenceservices"
LEASE_PATH = "/apis/coordination.k8s.io/v1/namespaces/ml/leases"


def isvc(name: str, generation: int, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "poolgate.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml", "uid": f"uid-{name}",
                     "generation": generation, "resourceVersion": str(generation)},
        "spec": {"modelRef": "llama-3-8b", **spec},
    }


@dataclass
class FakeApi:
    """Just enough of the Kubernetes API for the operator, recording every write."""

    items: list[dict[str, Any]]
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    applies: list[tuple[str, dict[str, str], str, dict[str, Any]]] = field(default_factory=list)
    statuses: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    unauthorised: int = 0
    # applied Deployments by name, with a `status` a test sets (no Deployment controller here)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    deployment_events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)
    isvc_lists: int = 0
    leases: dict[str, dict[str, Any]] = field(default_factory=dict)
    lease_writes: list[tuple[str, str]] = field(default_factory=list)  # (method, holder)
    deployment_watches: int = 0

    def set_deployment_status(self, name: str, **status: Any) -> None:
        self.deployments[name]["status"] = status

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.unauthorised += 1
                return web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
            resp: web.StreamResponse = await handler(request)
            return resp

        app = web.Application(middlewares=[auth])
        app.router.add_get(ISVC_PATH, self.list_or_watch)
        app.router.add_patch(ISVC_PATH + "/{name}/status", self.status)
        app.router.add_patch("/apis/apps/v1/namespaces/ml/deployments/{name}", self.apply)
        app.router.add_get("/apis/apps/v1/namespaces/ml/deployments/{name}", self.get_deployment)
        app.router.add_get("/apis/apps/v1/namespaces/ml/deployments", self.deployment_watch)
        app.router.add_get(ISVC_PATH + "/{name}", self.get_isvc)
        app.router.add_get(LEASE_PATH + "/{name}", self.get_lease)
        app.router.add_put(LEASE_PATH + "/{name}", self.put_lease)
        app.router.add_post(LEASE_PATH, self.post_lease)
        app.router.add_patch("/api/v1/namespaces/ml/services/{name}", self.apply)
        app.router.add_get("/api/v1/namespaces/ml/services/{name}", self.get_service)
        return app

    async def list_or_watch(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.isvc_lists += 1
            return web.json_response({"kind": "InferenceServiceList", "items": self.items,
                                      "metadata": {"resourceVersion": "10"}})
        assert request.query["resourceVersion"] == "10"
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            event = await self.events.get()
            await resp.write(orjson.dumps(event) + b"\n")

    async def apply(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        self.applies.append((request.path, dict(request.query),
                             request.headers.get("Content-Type", ""), body))
        if body["kind"] == "Deployment":
            name = request.match_info["name"]
            old = self.deployments.get(name)
            spec_changed = old is None or old["spec"] != body["spec"]
            generation = (old or {}).get("metadata", {}).get("generation", 0) + spec_changed
            self.deployments[name] = {**copy.deepcopy(body),
                                      "metadata": {**body["metadata"], "generation": generation},
                                      "status": (old or {}).get("status", {})}
            return web.json_response(self.deployments[name])
        self.services[request.match_info["name"]] = body
        return web.json_response(body)

    async def get_service(self, request: web.Request) -> web.Response:
        found = self.services.get(request.match_info["name"])
        if found is None:
            return web.json_response({"kind": "Status", "message": "not found"}, status=404)
        return web.json_response(found)

    async def deployment_watch(self, request: web.Request) -> web.StreamResponse:
        assert request.query["labelSelector"] == "app.kubernetes.io/managed-by=poolgate-operator"
        if request.query.get("watch") != "true":
            return web.json_response({"kind": "DeploymentList", "items": [],
                                      "metadata": {"resourceVersion": "20"}})
        assert request.query["resourceVersion"] == "20"
        self.deployment_watches += 1
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            event = await self.deployment_events.get()
            await resp.write(orjson.dumps(event) + b"\n")

    async def get_lease(self, request: web.Request) -> web.Response:
        found = self.leases.get(request.match_info["name"])
        if found is None:
            return web.json_response({"kind": "Status", "message": "not found"}, status=404)
        return web.json_response(found)

    def _store_lease(self, request: web.Request, body: dict[str, Any], name: str) -> web.Response:
        version = str(sum(1 for _ in self.lease_writes) + 1)
        body["metadata"]["resourceVersion"] = version
        self.leases[name] = body
        self.lease_writes.append((request.method, body["spec"]["holderIdentity"]))
        return web.json_response(body)

    async def post_lease(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        if body["metadata"]["name"] in self.leases:
            return web.json_response({"kind": "Status", "message": "exists"}, status=409)
        return self._store_lease(request, body, body["metadata"]["name"])

    async def put_lease(self, request: web.Request) -> web.Response:
        body = orjson.loads(await request.read())
        name = request.match_info["name"]
        current = self.leases.get(name)
        if current is None or (current["metadata"]["resourceVersion"]
                               != body["metadata"].get("resourceVersion")):
            return web.json_response({"kind": "Status", "message": "conflict"}, status=409)
        return self._store_lease(request, body, name)

    async def get_isvc(self, request: web.Request) -> web.Response:
        for item in self.items:
            if item["metadata"]["name"] == request.match_info["name"]:
                return web.json_response(item)
        return web.json_response({"kind": "Status", "message": "not found"}, status=404)

    async def get_deployment(self, request: web.Request) -> web.Response:
        found = self.deployments.get(request.match_info["name"])
        if found is None:
            return web.json_response({"kind": "Status", "message": "not found"}, status=404)
        return web.json_response(found)

    async def status(self, request: web.Request) -> web.Response:
        assert request.headers["Content-Type"] == "application/merge-patch+json"
        patch = orjson.loads(await request.read())
        self.statuses.append((request.match_info["name"], patch))
        for item in self.items:
            if item["metadata"]["name"] == request.match_info["name"]:
                item["status"] = {**item.get("status", {}), **patch["status"]}
        return web.json_response({})


@pytest.fixture
async def fake_api() -> AsyncIterator[tuple[FakeApi, int]]:
    api = FakeApi(items=[isvc("llama", 3, kvEndpoints=["redis-0.kv:6379"], replicas=2)])
    async with serve_app(api.app()) as port:
        yield api, port


def write_kubeconfig(tmp_path: Path, port: int) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "op", "namespace": "ml"}}],
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "op", "user": {"token": TOKEN}}],
    }))
    return kubeconfig


def conditions(status_patch: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status_patch["status"]["conditions"]}


async def eventually(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def test_operator_applies_renders_and_reports_status(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    api, port = fake_api
    kubeconfig = write_kubeconfig(tmp_path, port)
    health = free_port()
    operator = procs.start(poolgate_command("operator", "--kubeconfig", str(kubeconfig),
                                            "--health-port", str(health),
                                            "--health-host", "127.0.0.1"))

    # 1. the listed InferenceService: Deployment + Service applied exactly as rendered
    await eventually(lambda: len(api.applies) >= 2 and len(api.statuses) >= 1)
    async with aiohttp.ClientSession() as s:
        for probe in ("healthz", "readyz"):  # listed: ready
            async with s.get(f"http://127.0.0.1:{health}/{probe}") as r:
                assert r.status == 200, probe
    expected = render(api.items[0])
    (dep_path, params, ctype, dep), (svc_path, _, _, svc) = api.applies[:2]
    assert dep_path == "/apis/apps/v1/namespaces/ml/deployments/llama-router"
    assert svc_path == "/api/v1/namespaces/ml/services/llama-router"
    assert params == {"fieldManager": "poolgate-operator", "force": "true"}
    assert ctype == "application/apply-patch+yaml"
    assert [dep, svc] == expected
    name, status = api.statuses[0]
    assert name == "llama"
    assert status["status"]["observedGeneration"] == 3
    assert status["status"]["routerService"] == "llama-router.ml.svc"
    assert status["status"]["conditions"][0]["status"] == "True"

    # 2. a change arrives through the watch and is applied (the Deployment only: the Service
    # already holds everything rendered, so it is not written again)
    changed = copy.deepcopy(api.items[0])
    changed["metadata"]["generation"] = 4
    changed["spec"]["maxConcurrency"] = 3
    await api.events.put({"type": "MODIFIED", "object": changed})
    await eventually(lambda: len(api.applies) >= 3)
    env = {e["name"]: e.get("value") for e in
           api.applies[2][3]["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["MAX_CONCURRENCY"] == "3"

    # 3. an invalid one is reported in its status and nothing is applied for it
    await api.events.put({"type": "ADDED", "object": isvc("broken", 1, kvEndpoints=["nope"])})
    await eventually(lambda: any(n == "broken" for n, _ in api.statuses))
    condition = next(s for n, s in api.statuses if n == "broken")["status"]["conditions"][0]
    assert (condition["status"], condition["reason"]) == ("False", "InvalidSpec")
    assert "spec.kvEndpoints" in condition["message"]
    assert not any("broken" in path for path, _, _, _ in api.applies)
    assert api.unauthorised == 0

    operator.stop()
    assert operator.proc.returncode == 0
    assert "Traceback" not in operator.output()


async def test_status_reports_deployment_readiness_and_is_written_only_on_change(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    api, port = fake_api
    operator = procs.start(poolgate_command("operator", "--kubeconfig",
                                            str(write_kubeconfig(tmp_path, port))))

    # the Deployment was just created: its controller has not observed it yet
    await eventually(lambda: len(api.statuses) >= 1)
    assert conditions(api.statuses[0][1]) == {"Reconciled": ("True", "Applied"),
                                              "Ready": ("False", "Progressing")}
    assert api.statuses[0][1]["status"]["observedGeneration"] == 3

    # observed, 1 of 2 ready: still Progressing, with a new message (so written)
    api.set_deployment_status("llama-router", observedGeneration=1, replicas=2, readyReplicas=1)
    await api.events.put({"type": "MODIFIED", "object": copy.deepcopy(api.items[0])})
    await eventually(lambda: len(api.statuses) >= 2)
    await asyncio.sleep(0.3)
    assert len(api.statuses) == 2  # the message (1/2 ready) changed
    assert conditions(api.statuses[1][1])["Ready"] == ("False", "Progressing")
    assert api.statuses[1][1]["status"]["readyReplicas"] == 1

    # both ready: Ready/Available
    api.set_deployment_status("llama-router", observedGeneration=1, replicas=2, readyReplicas=2)
    await api.events.put({"type": "MODIFIED", "object": copy.deepcopy(api.items[0])})
    await eventually(lambda: len(api.statuses) >= 3)
    assert conditions(api.statuses[2][1])["Ready"] == ("True", "Available")

    # the same object again: neither the Deployment, the Service nor the status is rewritten
    await api.events.put({"type": "MODIFIED", "object": copy.deepcopy(api.items[0])})
    await asyncio.sleep(0.5)
    assert len(api.statuses) == 3
    assert len(api.applies) == 2

    operator.stop()
    assert operator.proc.returncode == 0
    assert "Traceback" not in operator.output()


async def test_owned_deployment_changes_reconcile_their_inference_service(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    api, port = fake_api
    operator = procs.start(poolgate_command("operator", "--kubeconfig",
                                            str(write_kubeconfig(tmp_path, port))))
    await eventually(lambda: len(api.statuses) >= 1 and api.deployment_watches == 1)
    assert conditions(api.statuses[0][1])["Ready"] == ("False", "Progressing")

    # 1. the Deployment's pods become ready: a Deployment event, no InferenceService event
    api.set_deployment_status("llama-router", observedGeneration=1, replicas=2, readyReplicas=2)
    await api.deployment_events.put({"type": "MODIFIED",
                                     "object": copy.deepcopy(api.deployments["llama-router"])})
    await eventually(lambda: len(api.statuses) >= 2)
    assert conditions(api.statuses[1][1])["Ready"] == ("True", "Available")

    # 2. someone edits it by hand: the rendered Deployment is applied again at once
    edited = copy.deepcopy(api.deployments["llama-router"])
    edited["spec"]["replicas"] = 7
    api.deployments["llama-router"] = edited
    applies = len(api.applies)
    await api.deployment_events.put({"type": "MODIFIED", "object": edited})
    await eventually(lambda: len(api.applies) >= applies + 1)
    assert api.deployments["llama-router"]["spec"]["replicas"] == 2

    # 3. someone deletes it: re-created, and Ready says so until the new one is ready
    gone = api.deployments.pop("llama-router")
    applies = len(api.applies)
    await api.deployment_events.put({"type": "DELETED", "object": gone})
    await eventually(lambda: "llama-router" in api.deployments and len(api.statuses) >= 3)
    assert api.applies[applies][0] == "/apis/apps/v1/namespaces/ml/deployments/llama-router"
    assert api.deployments["llama-router"]["spec"] == render(api.items[0])[0]["spec"]
    assert conditions(api.statuses[2][1])["Ready"] == ("False", "Progressing")

    # 4. a Deployment owned by something else is ignored
    stranger = copy.deepcopy(gone)
    stranger["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                "name": "x", "uid": "u", "controller": True}]
    applies = len(api.applies)
    await api.deployment_events.put({"type": "MODIFIED", "object": stranger})
    await asyncio.sleep(0.3)
    assert len(api.applies) == applies
    assert api.unauthorised == 0

    operator.stop()
    assert operator.proc.returncode == 0
    assert "Traceback" not in operator.output()


def router_env(deployment: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value") for e in
            deployment["spec"]["template"]["spec"]["containers"][0]["env"]}


async def test_router_env_change_rolls_out_and_an_unchanged_spec_writes_nothing(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    api, port = fake_api
    operator = procs.start(poolgate_command("operator", "--kubeconfig",
                                            str(write_kubeconfig(tmp_path, port))))
    await eventually(lambda: len(api.statuses) >= 1)
    assert api.deployments["llama-router"]["metadata"]["generation"] == 1
    assert len(api.applies) == 2

    # modelRef, maxConcurrency and kvEndpoints change: the pod template's env does, which is
    # what makes Kubernetes roll the Deployment out (the fake bumps its generation)
    changed = copy.deepcopy(api.items[0])
    changed["metadata"]["generation"] = 4
    changed["spec"].update(modelRef="llama-3-70b", maxConcurrency=4,
                           kvEndpoints=["redis-0.kv:6379", "redis-1.kv:6379"])
    api.items[0] = changed
    await api.events.put({"type": "MODIFIED", "object": copy.deepcopy(changed)})
    await eventually(lambda: len(api.applies) >= 3)
    await asyncio.sleep(0.3)
    assert [path.rsplit("/", 2)[1] for path, _, _, _ in api.applies[2:]] == ["deployments"]
    deployment = api.deployments["llama-router"]
    assert deployment["metadata"]["generation"] == 2
    env = router_env(deployment)
    assert (env["MODEL_REF"], env["MAX_CONCURRENCY"], env["KV_ENDPOINTS"]) == (
        "llama-3-70b", "4", "redis-0.kv:6379,redis-1.kv:6379")

    # a metadata-only change (no spec change): nothing is applied
    relabelled = copy.deepcopy(api.items[0])
    relabelled["metadata"]["labels"] = {"team": "ml"}
    await api.events.put({"type": "MODIFIED", "object": relabelled})
    await asyncio.sleep(0.5)
    assert len(api.applies) == 3
    assert api.deployments["llama-router"]["metadata"]["generation"] == 2

    operator.stop()
    assert operator.proc.returncode == 0
    assert "Traceback" not in operator.output()


async def test_two_operators_with_leader_election_only_the_leader_reconciles(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    api, port = fake_api
    kubeconfig = str(write_kubeconfig(tmp_path, port))
    elect = ["--leader-elect", "--lease-duration", "2", "--renew-deadline", "1.5",
             "--retry-period", "0.2"]
    first = procs.start(poolgate_command("operator", "--kubeconfig", kubeconfig, *elect),
                        env={"POD_NAME": "op-1"})
    await eventually(lambda: len(api.statuses) >= 1)
    second = procs.start(poolgate_command("operator", "--kubeconfig", kubeconfig, *elect),
                         env={"POD_NAME": "op-2"})
    await eventually(lambda: "leader election on Lease ml/poolgate-operator as op-2"
                     in second.output())
    await asyncio.sleep(1.5)  # several of the follower's rounds, longer than the lease

    # one leader: it holds the Lease and renews it; only it lists and writes
    assert api.leases["poolgate-operator"]["spec"]["holderIdentity"] == "op-1"
    assert {holder for _, holder in api.lease_writes} == {"op-1"}
    assert len(api.lease_writes) >= 5  # renewals every 0.2 s
    assert api.isvc_lists == 1 and api.deployment_watches == 1
    assert (len(api.applies), len(api.statuses)) == (2, 1)
    assert "became leader as op-1" in first.output()
    assert "became leader" not in second.output()

    # the leader stops: once its Lease has gone unrenewed for 2 s the other takes over, lists
    # and reconciles (a spec changed while nobody led is applied then)
    first.stop()
    assert first.proc.returncode == 0
    changed = copy.deepcopy(api.items[0])
    changed["metadata"]["generation"] = 4
    changed["spec"]["maxConcurrency"] = 3
    api.items[0] = changed
    await eventually(lambda: "became leader as op-2" in second.output())
    lease = api.leases["poolgate-operator"]["spec"]
    assert (lease["holderIdentity"], lease["leaseTransitions"]) == ("op-2", 1)
    await eventually(lambda: api.isvc_lists == 2 and len(api.applies) >= 3)
    assert router_env(api.deployments["llama-router"])["MAX_CONCURRENCY"] == "3"

    second.stop()
    assert second.proc.returncode == 0
    assert "Traceback" not in first.output() + second.output()

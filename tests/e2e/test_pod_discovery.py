"""`poolgate serve --discovery kubernetes` against a fake Kubernetes API server written here.

No cluster is available in tests, so the API server is a small aiohttp app in this test (not a
poolgate component): it lists the pods of one namespace and streams watch events the test
pushes. The model server is a real `poolgate sim` on 127.0.0.1; the pod that stands for it has
that address as its pod IP and the pool's target port is the simulator's port.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiohttp import web

from tests.e2e.gateway_fleet import GATEWAY_YAML, start_fleet
from tests.support.apps import serve_app
from tests.support.processes import ProcessGroup, free_port, poolgate_command

pytestmark = pytest.mark.e2e

TOKEN = "pods-token"
PODS_PATH = "/api/v1/namespaces/default/pods"


def pod(name: str, ready: bool) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "default", "labels": {"app": "vllm"}},
            "status": {"podIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}}


@dataclass
class FakeApi:
    """Pods of namespace `default`: a list, then watch events from a queue."""

    items: list[dict[str, Any]]
    events: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    lists: int = 0
    watches: int = 0

    def app(self) -> web.Application:
        @web.middleware
        async def auth(request: web.Request, handler: Any) -> web.StreamResponse:
            if request.headers.get("Authorization") != f"Bearer {TOKEN}":
                return web.json_response({"kind": "Status", "message": "Unauthorized"}, status=401)
            resp: web.StreamResponse = await handler(request)
            return resp

        app = web.Application(middlewares=[auth])
        app.router.add_get(PODS_PATH, self.list_or_watch)
        return app

    async def list_or_watch(self, request: web.Request) -> web.StreamResponse:
        if request.query.get("watch") != "true":
            self.lists += 1
            return web.json_response({"kind": "PodList", "items": self.items,
                                      "metadata": {"resourceVersion": "5"}})
        self.watches += 1
        resp = web.StreamResponse()
        await resp.prepare(request)
        while True:
            event = await self.events.get()
            await resp.write(orjson.dumps(event) + b"\n")


@pytest.fixture
async def fake_api() -> AsyncIterator[tuple[FakeApi, int]]:
    api = FakeApi(items=[pod("vllm-0", ready=True)])
    async with serve_app(api.app()) as port:
        yield api, port


def write_kubeconfig(tmp_path: Path, api_port: int) -> Path:
    """A kubeconfig whose current context is the fake API server, with its token."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "gw"}}],
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{api_port}"}}],
        "users": [{"name": "gw", "user": {"token": TOKEN}}],
    }))
    return kubeconfig


async def pool_endpoints(s: aiohttp.ClientSession, admin: int, pool: str) -> list[str] | None:
    """The endpoint addresses `/status` shows for `pool` (None while the admin port is not up)."""
    try:
        async with s.get(f"http://127.0.0.1:{admin}/status") as r:
            found = (await r.json())["pools"][pool]
    except aiohttp.ClientError:
        return None
    return [e["address"] for e in found["endpoints"]]


async def eventually(check: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"never saw {what}"
        await asyncio.sleep(0.05)


async def test_pools_follow_the_ready_pods_their_selector_matches(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    api, api_port = fake_api
    fleet = start_fleet(procs, 1)
    config = tmp_path / "config"
    config.mkdir()
    (config / "pool.yaml").write_text(GATEWAY_YAML + f"""\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - backendRefs: [{{group: inference.networking.k8s.io, kind: InferencePool, name: pool}}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: pool, namespace: default}}
spec:
  targetPorts: [{{number: {fleet.base_port}}}]
  selector: {{matchLabels: {{app: vllm}}}}
  endpointPickerRef: {{name: epp}}
""")
    kubeconfig = write_kubeconfig(tmp_path, api_port)
    port, admin = free_port(), free_port()
    procs.start(poolgate_command(
        "serve", "-f", str(config), "--port", str(port), "--admin-port", str(admin),
        "--host", "127.0.0.1", "--discovery", "kubernetes", "--kubeconfig", str(kubeconfig)))
    body = {"model": "/model/llama2", "prompt": "hi", "max_tokens": 2}

    async with aiohttp.ClientSession() as s:
        async def endpoints() -> list[str] | None:
            return await pool_endpoints(s, admin, "default/pool")

        async def completion_status() -> int:
            async with s.post(f"http://127.0.0.1:{port}/v1/completions", json=body) as r:
                await r.read()
                return r.status

        expected = [f"127.0.0.1:{fleet.base_port}"]
        assert await eventually(endpoints, "the listed pod as the endpoint") == expected
        assert await completion_status() == 200

        # The pod stops being Ready: the pool has no endpoint and answers 503.
        await api.events.put({"type": "MODIFIED", "object": pod("vllm-0", ready=False)})
        await eventually(lambda: _is(endpoints, []), "the pod removed")
        assert await completion_status() == 503

        # Ready again: traffic comes back.
        await api.events.put({"type": "MODIFIED", "object": pod("vllm-0", ready=True)})
        await eventually(lambda: _is(endpoints, expected), "the pod back")
        assert await completion_status() == 200
        assert api.lists >= 1 and api.watches >= 1


async def _is(get: Callable[[], Any], wanted: list[str]) -> bool:
    return bool(await get() == wanted)


def test_discovery_outside_a_cluster_without_kubeconfig_says_so(procs: ProcessGroup,
                                                                tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(GATEWAY_YAML)
    proc = procs.start(poolgate_command(
        "serve", "-f", str(config), "--port", str(free_port()), "--admin-port", str(free_port()),
        "--host", "127.0.0.1", "--discovery", "kubernetes"),
        env={"KUBERNETES_SERVICE_HOST": "", "COLUMNS": "400"})
    assert proc.proc.wait(timeout=60) == 1
    out = proc.output()
    assert "pod discovery" in out and "pass --kubeconfig" in out
    assert "Traceback" not in out


async def test_start_up_warns_only_about_what_the_pods_do_not_cover(
        procs: ProcessGroup, tmp_path: Path, fake_api: tuple[FakeApi, int]) -> None:
    _, api_port = fake_api
    config = tmp_path / "config"
    config.mkdir()
    # Two pools: `served` matches the listed pod, `orphan` matches nothing.
    pools = "".join(f"""\
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: {name}, namespace: default}}
spec:
  targetPorts: [{{number: 8000}}]
  selector: {{matchLabels: {{app: {app}}}}}
  endpointPickerRef: {{name: epp}}
""" for name, app in (("served", "vllm"), ("orphan", "nothing")))
    (config / "pools.yaml").write_text(GATEWAY_YAML + pools)
    kubeconfig = write_kubeconfig(tmp_path, api_port)
    admin = free_port()
    proc = procs.start(poolgate_command(
        "serve", "-f", str(config), "--port", str(free_port()), "--admin-port", str(admin),
        "--host", "127.0.0.1", "--discovery", "kubernetes", "--kubeconfig", str(kubeconfig)))
    async with aiohttp.ClientSession() as s:
        async def served_endpoints() -> list[str] | None:
            return await pool_endpoints(s, admin, "default/served")

        await eventually(served_endpoints, "the served pool's pod")
    warnings = [line for line in proc.output().splitlines() if "will answer 503" in line]
    assert len(warnings) == 1 and "app=nothing" in warnings[0], warnings

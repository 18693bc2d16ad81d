"""`poolgate serve --source kubernetes` against the fake API server (tests/support/fake_kube.py).

No Kubernetes API server can be installed here; the fake implements the API's list/watch,
status subresource, merge patch and Lease semantics. The objects are the seeds' manifests applied
to it unmodified, as `kubectl apply -f` would; the model servers are a real `poolgate sim` fleet
(declared to the gateway by a LocalEndpoints file given with `-f`, a local override, since the
fake runs no pods). The gateways are real `poolgate serve` processes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.e2e.gateway_fleet import SEED_000, start_fleet, write_endpoints
from tests.support.fake_kube import FakeKubeApi, serve_fake_kube, write_kubeconfig
from tests.support.processes import ProcessGroup, ServerProcess, free_port, poolgate_command

pytestmark = pytest.mark.e2e

TOKEN = "gateway-token"
ENVOY_GATEWAY = "gateway.envoyproxy.io/gatewayclass-controller"
BODY = {"model": "/model/llama2", "max_completion_tokens": 4,
        "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
async def api() -> AsyncIterator[tuple[FakeKubeApi, int]]:
    fake = FakeKubeApi(token=TOKEN, bookmark_interval=0.5).register_defaults()
    async with serve_fake_kube(fake) as port:
        yield fake, port


def apply_files(api: FakeKubeApi, *files: Path) -> list[str]:
    """`kubectl apply -f` of every document whose kind the fake serves; the skipped kinds."""
    skipped = []
    for file in files:
        for doc in yaml.safe_load_all(file.read_text()):
            if not doc:
                continue
            try:
                api.apply(doc)
            except (KeyError, LookupError, ValueError) as e:
                skipped.append(f"{doc['kind']}: {e}")
    return skipped


class Gateway:
    def __init__(self, proc: ServerProcess, port: int, admin: int) -> None:
        self.proc, self.port, self.admin = proc, port, admin

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_gateway(procs: ProcessGroup, tmp_path: Path, api_port: int, *extra: str,
                  env: dict[str, str] | None = None) -> Gateway:
    port, admin = free_port(), free_port()
    kubeconfig = write_kubeconfig(tmp_path / f"kubeconfig-{port}", api_port, TOKEN)
    proc = procs.start(poolgate_command(
        "serve", "--source", "kubernetes", "--kubeconfig", str(kubeconfig),
        "--port", str(port), "--admin-port", str(admin), "--host", "127.0.0.1", "--seed", "1",
        *extra), env=env)
    return Gateway(proc, port, admin)


async def eventually(check: Callable[[], Awaitable[Any]], what: str,
                     timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"never saw {what} (last: {last!r})")


async def chat(s: aiohttp.ClientSession, gw: Gateway, host: str = "example.com") -> int:
    try:
        async with s.post(f"{gw.url}/v1/chat/completions", json=BODY,
                          headers={"host": host}) as r:
            await r.read()
            return r.status
    except aiohttp.ClientConnectionError:
        return 0


def conditions(entry: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in entry.get("conditions") or []}


def status_of(api: FakeKubeApi, api_version: str, kind: str, namespace: str | None,
              name: str) -> dict[str, Any]:
    found = api.get(api_version, kind, namespace, name)
    return (found or {}).get("status") or {}


async def test_seed_000_applied_to_the_api_is_served_and_its_status_written(
        procs: ProcessGroup, tmp_path: Path, api: tuple[FakeKubeApi, int]) -> None:
    fake, api_port = api
    skipped = apply_files(fake, *(SEED_000 / n for n in
                                  ("gateway.yaml", "inference_rules.yaml", "inference_app.yaml")))
    assert all(s.startswith("Deployment") for s in skipped), skipped
    fleet = start_fleet(procs, 1)
    local = tmp_path / "local"
    local.mkdir()
    write_endpoints(local, {"app": "vllm-llama2-7b-pool"}, fleet.addresses)
    # Seed 000's own GatewayClass names Envoy Gateway's controller: poolgate takes it over.
    gw = start_gateway(procs, tmp_path, api_port, "-f", str(local),
                       "--controller-name", ENVOY_GATEWAY, "--no-leader-elect")

    async with aiohttp.ClientSession() as s:
        await eventually(lambda: _is(chat(s, gw), 200), "the seed's route served")

        gw_status = await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "Gateway", "default", "example-gateway")),
            "the Gateway's status")
        assert conditions(gw_status) == {"Accepted": ("True", "Accepted"),
                                         "Programmed": ("True", "Programmed")}
        (listener,) = gw_status["listeners"]
        assert listener["name"] == "http" and listener["attachedRoutes"] == 1
        observed = {c["observedGeneration"] for c in gw_status["conditions"]}
        assert observed == {fake.get("gateway.networking.k8s.io/v1", "Gateway", "default",
                                     "example-gateway")["metadata"]["generation"]}

        gc = status_of(fake, "gateway.networking.k8s.io/v1", "GatewayClass", None,
                       "example-gateway-class")
        assert conditions(gc) == {"Accepted": ("True", "Accepted")}

        route = await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "HTTPRoute", "default", "test-httproute"
        ).get("parents")), "the route's parents")
        (parent,) = route
        assert parent["controllerName"] == ENVOY_GATEWAY
        assert parent["parentRef"]["name"] == "example-gateway"
        assert conditions(parent) == {"Accepted": ("True", "Accepted"),
                                      "ResolvedRefs": ("True", "ResolvedRefs")}
        (pool_parent,) = await eventually(lambda: _async(status_of(
            fake, "inference.networking.x-k8s.io/v1alpha2", "InferencePool", "default",
            "vllm-llama2-7b-pool").get("parent")), "the pool's parents")
        assert conditions(pool_parent)["Accepted"] == ("True", "Accepted")

        # The status is written once: an unchanged state writes nothing more.
        writes = len(fake.matching("PATCH", "/apis/gateway.networking.k8s.io/v1/namespaces/"
                                   "default/gateways/example-gateway/status"))
        assert writes == 1

        # A broken route: left out, its status says why; the rest keeps serving.
        fake.apply({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "broken", "namespace": "default"},
            "spec": {"parentRefs": [{"name": "example-gateway"}], "rules": [{
                "matches": [{"path": {"type": "RegularExpression", "value": "/v1/(("}}],
                "backendRefs": [{"group": "inference.networking.x-k8s.io",
                                 "kind": "InferencePool", "name": "vllm-llama2-7b-pool"}]}]},
        })
        (broken,) = await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "HTTPRoute", "default", "broken"
        ).get("parents")), "the broken route's status")
        accepted = next(c for c in broken["conditions"] if c["type"] == "Accepted")
        assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")
        assert "invalid regular expression" in accepted["message"]
        assert await chat(s, gw) == 200

        # Deleting the route: 404 within a second.
        fake.delete("gateway.networking.k8s.io/v1", "HTTPRoute", "default", "test-httproute")
        started = time.monotonic()
        await eventually(lambda: _is(chat(s, gw), 404), "404 after the delete", timeout=1.0)
        elapsed = time.monotonic() - started
        assert elapsed < 1.0, elapsed
        # ...and the Gateway's listener counts no route any more.
        await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "Gateway", "default", "example-gateway"
        )["listeners"][0]["attachedRoutes"] == 0), "attachedRoutes 0")


async def _is(result: Awaitable[Any], wanted: Any) -> bool:
    return bool(await result == wanted)


async def _async(value: Any) -> Any:
    return value


GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: poolgate}
spec: {controllerName: poolgate.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ml}
spec:
  gatewayClassName: poolgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: ml}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
"""


def pool_yaml(port: int) -> str:
    return f"""
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {{name: pool, namespace: ml}}
spec:
  targetPorts: [{{number: {port}}}]
  selector: {{matchLabels: {{app: vllm}}}}
  endpointPickerRef: {{name: builtin}}
"""


def pod(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "ml", "labels": {"app": "vllm"}},
            "spec": {"containers": [{"name": "vllm", "image": "vllm"}]},
            "status": {"podIP": "127.0.0.1",
                       "conditions": [{"type": "Ready", "status": "True"}]}}


async def test_two_replicas_serve_and_only_the_lease_holder_writes_status(
        procs: ProcessGroup, tmp_path: Path, api: tuple[FakeKubeApi, int]) -> None:
    fake, api_port = api
    fleet = start_fleet(procs, 1)
    for doc in yaml.safe_load_all(GATEWAY + "---" + pool_yaml(fleet.base_port)):
        fake.apply(doc)
    created = fake.apply(pod("vllm-0"))
    fake.set_status("v1", "Pod", "ml", "vllm-0", pod("vllm-0")["status"])
    assert created["metadata"]["name"] == "vllm-0"
    timing = ("--lease-duration", "2", "--renew-deadline", "1.5", "--retry-period", "0.2",
              "--lease-namespace", "ml", "--namespace", "ml")
    a = start_gateway(procs, tmp_path, api_port, *timing, env={"POD_NAME": "gw-a"})
    b = start_gateway(procs, tmp_path, api_port, *timing, env={"POD_NAME": "gw-b"})

    async with aiohttp.ClientSession() as s:
        for gw in (a, b):  # every replica serves, leader or not
            await eventually(lambda gw=gw: _is(chat(s, gw, "any"), 200), "both serving")
        lease = await eventually(lambda: _async(fake.get(
            "coordination.k8s.io/v1", "Lease", "ml", "poolgate-gateway")), "the Lease")
        leader = lease["spec"]["holderIdentity"]
        assert leader in ("gw-a", "gw-b")
        await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "route").get("parents")),
            "the route's status")
        writers = {r.user_agent for r in fake.matching("PATCH") if r.path.endswith("/status")}
        assert writers == {f"poolgate/{_version()} (gateway; {leader})"}, writers

        # --namespace ml: namespaced kinds are watched in ml only.
        lists = {r.path for r in fake.matching("GET") if not r.is_watch}
        assert all("/namespaces/ml/" in p or p.endswith("/gatewayclasses")
                   for p in lists if "/leases/" not in p), lists

        # The leader stops: the other replica takes the Lease over and writes from then on.
        (a if leader == "gw-a" else b).proc.proc.terminate()  # SIGTERM, without blocking the loop
        other = "gw-b" if leader == "gw-a" else "gw-a"
        await eventually(lambda: _async(fake.get(
            "coordination.k8s.io/v1", "Lease", "ml", "poolgate-gateway"
        )["spec"]["holderIdentity"] == other), "the takeover", timeout=15)
        fake.apply({**yaml.safe_load(GATEWAY.split("---")[2]),
                    "metadata": {"name": "route2", "namespace": "ml"}})
        await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "HTTPRoute", "ml", "route2").get("parents")),
            "the new route's status from the new leader")
        writers = {r.user_agent for r in fake.matching("PATCH")
                   if r.path.endswith("/httproutes/route2/status")}
        assert writers == {f"poolgate/{_version()} (gateway; {other})"}, writers


def _version() -> str:
    from poolgate import __version__
    return __version__


async def test_the_charts_gateway_container_runs_as_rendered(
        procs: ProcessGroup, tmp_path: Path, api: tuple[FakeKubeApi, int]) -> None:
    """The gateway started with the arguments `helm template` renders (only the bind addresses,
    ports and credentials changed for a test): it serves, and reports the Service's address."""
    from tests.deploy._chart import NAMESPACE, RELEASE, one, render

    fake, api_port = api
    deployment = one(render(), "Deployment", f"{RELEASE}-poolgate-gateway")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    args = list(container["args"])
    service_ns, service_name = args[args.index("--publish-service") + 1].split("/")
    assert service_ns == NAMESPACE
    fake.apply({"apiVersion": "v1", "kind": "Service",
                "metadata": {"name": service_name, "namespace": NAMESPACE},
                "spec": {"clusterIP": "10.96.0.42", "ports": [{"port": 80}]}})
    fleet = start_fleet(procs, 1)
    for doc in yaml.safe_load_all(GATEWAY + "---" + pool_yaml(fleet.base_port)):
        fake.apply(doc)
    fake.apply(pod("vllm-0"))
    fake.set_status("v1", "Pod", "ml", "vllm-0", pod("vllm-0")["status"])
    env = {e["name"]: f"pod-{e['name'].lower()}" for e in container.get("env") or []
           if "valueFrom" in e}
    env["POD_NAMESPACE"] = NAMESPACE
    port, admin = free_port(), free_port()
    kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api_port, TOKEN)
    # Later flags win: the test binds 127.0.0.1 on free ports.
    proc = procs.start(poolgate_command(
        *args, "--kubeconfig", str(kubeconfig), "--host", "127.0.0.1", "--port", str(port),
        "--admin-host", "127.0.0.1", "--admin-port", str(admin)), env=env)
    gw = Gateway(proc, port, admin)
    async with aiohttp.ClientSession() as s:
        await eventually(lambda: _is(chat(s, gw, "any"), 200), "the chart's gateway serving")
        for probe in ("/healthz", "/readyz"):
            path = next(p for p in ("livenessProbe", "readinessProbe")
                        if container[p]["httpGet"]["path"] == probe)
            assert container[path]["httpGet"]["port"] in ("admin", 9901)
            async def probed(probe: str = probe) -> bool:
                async with s.get(f"http://127.0.0.1:{admin}{probe}") as r:
                    return r.status == 200

            await eventually(probed, f"{probe} answering 200")
        gw_status = await eventually(lambda: _async(status_of(
            fake, "gateway.networking.k8s.io/v1", "Gateway", "ml", "gw").get("addresses")),
            "the Gateway's addresses")
        assert gw_status == [{"type": "IPAddress", "value": "10.96.0.42"}]
    lease = fake.get("coordination.k8s.io/v1", "Lease", NAMESPACE,
                     args[args.index("--lease-name") + 1])
    assert lease is not None and lease["spec"]["holderIdentity"] == env.get("POD_NAME"), lease

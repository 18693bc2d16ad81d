"""Active health checks and passive outlier ejection end to end, with the simulator's faults."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.e2e.gateway_fleet import Fleet, RunningGateway, start_fleet, start_gateway
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

BASE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: poolgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: networking.gke.io, kind: GCPInferencePoolImport, name: pool}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: pool
  annotations: {networking.gke.io/export: "true"}
spec:
  targetPortNumber: 8000
  selector: {app: sim}
"""

HEALTH_CHECK_POLICY = {
    "apiVersion": "networking.gke.io/v1", "kind": "HealthCheckPolicy", "metadata": {"name": "hc"},
    "spec": {"targetRef": {"group": "networking.gke.io", "kind": "GCPInferencePoolImport",
                           "name": "pool"},
             "default": {"checkIntervalSec": 1, "timeoutSec": 1, "healthyThreshold": 1,
                         "unhealthyThreshold": 1,
                         "config": {"type": "HTTP",
                                    "httpHealthCheck": {"requestPath": "/health", "port": 8000}}}},
}
CUSTOM_METRICS = {
    "apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy", "metadata": {"name": "bp"},
    "spec": {"targetRef": {"group": "networking.gke.io", "kind": "GCPInferencePoolImport",
                           "name": "pool"},
             "default": {"balancingMode": "CUSTOM_METRICS",
                         "customMetrics": [{"name": "gke.named_metrics.kv-cache",
                                            "maxUtilizationPercent": 60}]}},
}
PASSIVE = {
    "apiVersion": "gateway.envoyproxy.io/v1alpha1", "kind": "BackendTrafficPolicy",
    "metadata": {"name": "outlier"},
    "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute",
                             "name": "route"}],
             "healthCheck": {"passive": {"consecutive5XxErrors": 2, "baseEjectionTime": "1s",
                                         "interval": "1s", "maxEjectionPercent": 50}}},
}


def start(procs: ProcessGroup, tmp_path: Path, fleet: Fleet, near: int,
          extra: list[dict[str, Any]]) -> RunningGateway:
    config = tmp_path / "config"
    config.mkdir()
    (config / "base.yaml").write_text(BASE)
    addresses = [{"address": a, "region": "near" if i < near else "far"}
                 for i, a in enumerate(fleet.addresses)]
    endpoints = {"apiVersion": "poolgate.dev/v1alpha1", "kind": "LocalEndpoints",
                 "metadata": {"name": "pods"},
                 "spec": {"labels": {"app": "sim"}, "addresses": addresses}}
    (config / "local.yaml").write_text(yaml.safe_dump_all([endpoints, *extra], sort_keys=False))
    return start_gateway(procs, config, "--region", "near", "--region-order", "near,far",
                         "--access-log", str(tmp_path / "access.log"))


def served(tmp_path: Path) -> list[str]:
    lines = (tmp_path / "access.log").read_text().splitlines()
    return [orjson.loads(line)["endpoint"] for line in lines if line]


async def send(s: aiohttp.ClientSession, gw: RunningGateway, n: int) -> list[int]:
    """`n` requests one after another; returns once the gateway has logged each of them (it
    writes a request's access-log line just after the client got the last byte)."""
    log = gw.config_dir.parent / "access.log"
    statuses = []
    for i in range(n):
        logged = _lines(log)
        # Distinct prompts: no prefix-cache affinity pins the requests to one endpoint.
        body = {"model": "/model/llama2", "prompt": f"{i} {time.monotonic()}", "max_tokens": 2,
                "ignore_eos": True}
        async with s.post(f"{gw.url}/v1/completions", json=body) as r:
            await r.read()
            statuses.append(r.status)
        deadline = time.monotonic() + 5
        while _lines(log) == logged and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
    return statuses


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


async def wait_for(s: aiohttp.ClientSession, gw: RunningGateway,
                   ok: Callable[[dict[str, Any]], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while True:
        async with s.get(f"{gw.admin}/status") as r:
            status = await r.json()
        if ok(status):
            return
        assert time.monotonic() < deadline, f"never saw {what}: {status}"
        await asyncio.sleep(0.05)


async def set_fault(s: aiohttp.ClientSession, fleet: Fleet, i: int, **fault: Any) -> None:
    async with s.post(f"{fleet.urls[i]}/admin/faults", json=fault) as r:
        assert r.status == 200, await r.text()


def healthy(status: dict[str, Any]) -> dict[str, bool]:
    return {ep["address"]: ep.get("healthy", True)
            for ep in status["pools"]["default/pool"]["endpoints"]}


async def test_region_fails_over_when_most_endpoints_fail_checks_and_returns(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 5)
    near, far = fleet.addresses[:3], fleet.addresses[3:]
    gw = start(procs, tmp_path, fleet, 3, [HEALTH_CHECK_POLICY, CUSTOM_METRICS])
    async with aiohttp.ClientSession() as s:
        assert await send(s, gw, 6) == [200] * 6
        assert set(served(tmp_path)) <= set(near)

        # Two of three near endpoints fail /health: fewer than half are healthy.
        for i in (0, 1):
            await set_fault(s, fleet, i, unhealthy=True)
        await wait_for(s, gw, lambda st: [healthy(st)[a] for a in near] == [False, False, True],
                       "two near endpoints unhealthy")
        before = len(served(tmp_path))
        assert await send(s, gw, 6) == [200] * 6
        assert set(served(tmp_path)[before:]) <= set(far)
        async with s.get(f"{gw.admin}/readyz") as r:
            assert r.status == 200

        for i in (0, 1):
            await set_fault(s, fleet, i, unhealthy=False)
        await wait_for(s, gw, lambda st: all(healthy(st).values()), "every endpoint healthy")
        before = len(served(tmp_path))
        assert await send(s, gw, 6) == [200] * 6
        assert set(served(tmp_path)[before:]) <= set(near)


async def test_readyz_fails_when_no_endpoint_is_healthy(procs: ProcessGroup,
                                                       tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1)
    gw = start(procs, tmp_path, fleet, 1, [HEALTH_CHECK_POLICY])
    async with aiohttp.ClientSession() as s:
        await set_fault(s, fleet, 0, unhealthy=True)
        await wait_for(s, gw, lambda st: not any(healthy(st).values()), "the endpoint unhealthy")
        async with s.get(f"{gw.admin}/readyz") as r:
            assert r.status == 503
            assert "healthy endpoint" in await r.text()
        await set_fault(s, fleet, 0, unhealthy=False)
        await wait_for(s, gw, lambda st: all(healthy(st).values()), "the endpoint healthy")
        async with s.get(f"{gw.admin}/readyz") as r:
            assert r.status == 200


async def test_outlier_is_ejected_then_returns_after_the_ejection_time(
        procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2)
    bad, good = fleet.addresses
    gw = start(procs, tmp_path, fleet, 2, [PASSIVE])
    async with aiohttp.ClientSession() as s:
        await set_fault(s, fleet, 0, error_rate=1.0, error_status=500)
        key = "httproute/default/route/rule/0/backend/0"
        statuses: list[int] = []
        for _ in range(40):
            statuses += await send(s, gw, 1)
            async with s.get(f"{gw.admin}/status") as r:
                if (await r.json())["ejected"].get(key) == [bad]:
                    break
        log = served(tmp_path)
        assert log.count(bad) == 2 and statuses.count(500) == 2, (log, statuses)
        # Ejected after its second consecutive 500: everything goes to the other endpoint.
        assert await send(s, gw, 8) == [200] * 8
        assert served(tmp_path)[len(log):] == [good] * 8

        await set_fault(s, fleet, 0, error_rate=0.0)
        await wait_for(s, gw, lambda st: st["ejected"][key] == [], "the ejection end")
        before = len(served(tmp_path))
        assert await send(s, gw, 12) == [200] * 12
        assert bad in served(tmp_path)[before:]
        async with s.get(f"{gw.admin}/metrics") as r:
            assert ('poolgate_outlier_ejections_total{backend="' + key
                    + '",reason="consecutive_5xx"} 1.0') in await r.text()

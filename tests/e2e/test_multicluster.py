"""Multi-region balancing end to end: IN_FLIGHT caps under real concurrency, dry runs, timeoutSec."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from tests.e2e.gateway_fleet import GATEWAY_YAML, Fleet, RunningGateway, start_fleet, start_gateway
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

ROUTE = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: networking.gke.io, kind: GCPInferencePoolImport, name: pool}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool
  annotations: {networking.gke.io/export: "True"}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
"""


def write_config(tmp_path: Path, fleet: Fleet, near: int, policy: dict[str, Any]) -> Path:
    """The first `near` replicas in region `near`, the rest in `far`, and a GCPBackendPolicy."""
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "route.yaml").write_text(ROUTE)
    addresses = [{"address": a, "region": "near" if i < near else "far",
                  "cluster": "west" if i < near else "east"}
                 for i, a in enumerate(fleet.addresses)]
    docs = [
        {"apiVersion": "poolgate.dev/v1alpha1", "kind": "LocalEndpoints",
         "metadata": {"name": "pods"}, "spec": {"labels": {"app": "sim"}, "addresses": addresses}},
        {"apiVersion": "networking.gke.io/v1", "kind": "GCPBackendPolicy",
         "metadata": {"name": "bp"},
         "spec": {"targetRef": {"group": "networking.gke.io", "kind": "GCPInferencePoolImport",
                                "name": "pool"}, "default": policy}},
    ]
    (config / "local.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return config


def serve(procs: ProcessGroup, config: Path) -> RunningGateway:
    return start_gateway(procs, config, "--region", "near", "--region-order", "near,far",
                         "--access-log", str(config.parent / "access.log"))


def endpoints_served(gw: RunningGateway) -> list[str]:
    log = gw.config_dir.parent / "access.log"
    return [orjson.loads(line)["endpoint"] for line in log.read_text().splitlines() if line]


async def complete(s: aiohttp.ClientSession, gw: RunningGateway, max_tokens: int = 2,
                   stream: bool = False) -> tuple[int, bytes]:
    body = {"model": "/model/llama2", "prompt": "hello", "max_tokens": max_tokens,
            "ignore_eos": True, "stream": stream}
    async with s.post(f"{gw.url}/v1/completions", json=body) as r:
        return r.status, await r.read()


async def test_in_flight_cap_is_never_exceeded_and_spills_then_503(procs: ProcessGroup,
                                                                   tmp_path: Path) -> None:
    # Each generation waits 0.6 s before it starts, so all twelve requests overlap.
    fleet = start_fleet(procs, 3, extra=["--fault-latency", "0.6"])
    config = write_config(tmp_path, fleet, 2, {"balancingMode": "IN_FLIGHT",
                                               "maxInFlightRequestsPerEndpoint": 2})
    gw = serve(procs, config)
    seen: dict[str, int] = {}
    async with aiohttp.ClientSession() as s:
        tasks = [asyncio.create_task(complete(s, gw)) for _ in range(12)]
        while not all(t.done() for t in tasks):
            async with s.get(f"{gw.admin}/status") as r:
                for ep in (await r.json())["pools"]["default/pool"]["endpoints"]:
                    seen[ep["address"]] = max(seen.get(ep["address"], 0), ep["in_flight"])
            await asyncio.sleep(0.02)
        results = [t.result() for t in tasks]
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] * 6 + [503] * 6, statuses
    refused = next(body for status, body in results if status == 503)
    assert orjson.loads(refused)["error"]["code"] == "in_flight_limit"
    assert all(n <= 2 for n in seen.values()), seen
    served = endpoints_served(gw)
    near, far = fleet.addresses[:2], fleet.addresses[2]
    assert sorted(e for e in served if e in near) == sorted(near * 2)
    assert served.count(far) == 2


async def test_dry_run_reports_but_changes_no_routing(procs: ProcessGroup,
                                                      tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2)
    policy = {"balancingMode": "CUSTOM_METRICS",
              "customMetrics": [{"name": "gke.named_metrics.kv-cache",
                                 "maxUtilizationPercent": 60, "dryRun": True}]}
    gw = serve(procs, write_config(tmp_path, fleet, 1, policy))
    async with aiohttp.ClientSession() as s:
        for _ in range(16):
            assert (await complete(s, gw))[0] == 200
        async with s.get(f"{gw.admin}/metrics") as r:
            metrics = await r.text()
    served = endpoints_served(gw)
    # An idle near region would take everything; the dry run leaves the picker both regions.
    assert set(served) == set(fleet.addresses), served
    assert ('poolgate_balancing_decisions_total{dry_run="true",mode="CUSTOM_METRICS",'
            'pool="default/pool",reason="nearest",region="near"} 16.0') in metrics


async def test_custom_metrics_keeps_an_idle_near_region(procs: ProcessGroup,
                                                        tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2)
    policy = {"balancingMode": "CUSTOM_METRICS",
              "customMetrics": [{"name": "gke.named_metrics.kv-cache", "maxUtilization": 60}]}
    gw = serve(procs, write_config(tmp_path, fleet, 1, policy))
    async with aiohttp.ClientSession() as s:
        for _ in range(8):
            assert (await complete(s, gw))[0] == 200
    assert set(endpoints_served(gw)) == {fleet.addresses[0]}


async def test_timeout_sec_answers_504_then_cuts_streams_with_an_sse_error(
        procs: ProcessGroup, tmp_path: Path) -> None:
    # a10 decode steps are slow enough that 4000 tokens stream for well over one second.
    fleet = start_fleet(procs, 1, profile="a10-llama2-7b", extra=["--max-model-len", "8192"])
    gw = serve(procs, write_config(tmp_path, fleet, 1, {"timeoutSec": 1}))
    async with aiohttp.ClientSession() as s:
        started = time.monotonic()
        status, body = await complete(s, gw, max_tokens=4000, stream=True)
        elapsed = time.monotonic() - started
        assert status == 200
        events = [e for e in body.decode().split("\n\n") if e]
        assert events[-1] == "data: [DONE]"
        error = orjson.loads(events[-2].removeprefix("data: "))["error"]
        assert error["code"] == 504 and "timeoutSec 1s" in error["message"]
        assert len(events) > 3  # tokens were streamed before the cut
        assert 0.9 < elapsed < 10

        async with s.post(f"{fleet.urls[0]}/admin/faults", json={"added_latency": 3}) as r:
            assert r.status == 200
        status, body = await complete(s, gw)
        assert status == 504
        assert "timeoutSec 1s" in orjson.loads(body)["error"]["message"]

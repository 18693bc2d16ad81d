"""BackendTrafficPolicy and HTTPRoute timeouts through the real gateway, against faulty replicas."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import aiohttp
import pytest

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1ALPHA2_YAML,
    Fleet,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.support.processes import ProcessGroup, free_port

pytestmark = pytest.mark.e2e

BASE = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
    %(timeouts)s
---
""" + POOL_V1ALPHA2_YAML

POLICY = """\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: policy, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: route}]
"""

RESET = "upstream connect error or disconnect/reset before headers. "
REQUEST = {"model": "/model/llama2", "prompt": "hi", "max_tokens": 2}


def _gateway(procs: ProcessGroup, tmp_path: Path, addresses: list[str], policy: str = "",
             timeouts: str = "") -> RunningGateway:
    config = tmp_path / "config"
    config.mkdir(parents=True)
    (config / "gw.yaml").write_text(BASE % {"timeouts": timeouts} + (POLICY + policy if policy else ""))
    write_endpoints(config, {"app": "sim"}, addresses)
    return start_gateway(procs, config)


async def _faults(s: aiohttp.ClientSession, url: str, **settings: object) -> None:
    async with s.post(f"{url}/admin/faults", json=settings) as r:
        assert r.status == 200, await r.text()


@pytest.fixture
def fleet(procs: ProcessGroup) -> Fleet:
    return start_fleet(procs, 2)


async def test_retry_on_503_goes_to_the_healthy_replica(procs: ProcessGroup, fleet: Fleet,
                                                        tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses, """\
  retry:
    numRetries: 2
    retryOn: {triggers: [retriable-status-codes], httpStatusCodes: [503]}
    perRetry: {backOff: {baseInterval: 10ms, maxInterval: 20ms}}
""")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], error_rate=1.0, error_status=503)
        for _ in range(8):
            async with s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
                assert r.status == 200
    records = await gw.access_log(8)
    retried = [rec for rec in records if rec["attempts"] == 2]
    assert retried, "no request was first sent to the failing replica"
    assert all(rec["endpoint"] == fleet.addresses[1] for rec in records)


async def test_without_a_retry_policy_the_upstream_error_passes_through(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses[:1])
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], error_rate=1.0, error_status=503)
        async with s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
            assert r.status == 503
            body = await r.json()
    assert "Injected fault" in body["error"]["message"]


async def test_dead_endpoint_answers_envoy_connection_failure_and_retry_avoids_it(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    dead = f"127.0.0.1:{free_port()}"
    gw = _gateway(procs, tmp_path, [dead])
    async with aiohttp.ClientSession() as s, s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
        assert r.status == 503
        assert await r.text() == RESET + "reset reason: connection failure"

    gw2 = _gateway(procs, tmp_path / "second", [dead, fleet.addresses[0]], """\
  retry:
    numRetries: 1
    retryOn: {triggers: [connect-failure]}
""")
    async with aiohttp.ClientSession() as s:
        for _ in range(6):
            async with s.post(f"{gw2.url}/v1/completions", json=REQUEST) as r:
                assert r.status == 200
    assert {rec["endpoint"] for rec in await gw2.access_log(6)} == {fleet.addresses[0]}


async def test_local_rate_limit_answers_429(procs: ProcessGroup, fleet: Fleet,
                                            tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses, """\
  rateLimit:
    type: Local
    local:
      rules:
      - limit: {requests: 2, unit: Minute}
""")
    async with aiohttp.ClientSession() as s:
        statuses = []
        for _ in range(3):
            async with s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
                statuses.append(r.status)
                text = await r.text()
    assert statuses == [200, 200, 429]
    assert text == "local_rate_limited"


async def test_route_timeout_answers_504_before_the_response_starts(
        procs: ProcessGroup, fleet: Fleet, tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet.addresses[:1], timeouts="timeouts: {request: 500ms}")
    async with aiohttp.ClientSession() as s:
        await _faults(s, fleet.urls[0], hang_rate=1.0)
        started = time.monotonic()
        async with s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
            assert r.status == 504
            assert await r.text() == "upstream request timeout"
        assert 0.4 < time.monotonic() - started < 5
        # The abandoned request was cancelled upstream: the replica is free again.
        await _faults(s, fleet.urls[0], hang_rate=0.0)
        await asyncio.sleep(0.1)
        async with s.post(f"{gw.url}/v1/completions", json=REQUEST) as r:
            assert r.status == 200

"""The InferenceService router forwarding to the gateway, which routes to a simulated fleet."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1_YAML,
    ROUTE_TO_POOL_YAML,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.e2e.router_process import start_router
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

CONFIG = GATEWAY_YAML + ROUTE_TO_POOL_YAML + "---\n" + POOL_V1_YAML


async def test_router_infers_through_the_gateway(procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 2)
    config = tmp_path / "config"
    config.mkdir()
    (config / "gw.yaml").write_text(CONFIG)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    gw = start_gateway(procs, config)
    router = start_router(procs, MODEL_REF="/model/llama2", BACKEND_URL=gw.url,
                          BACKEND_HEALTH_INTERVAL_MS="100", MAX_CONCURRENCY="4")
    async with aiohttp.ClientSession() as s:
        for i in range(4):
            async with s.post(f"{router.url}/infer",
                              json={"prompt": f"question {i}", "max_tokens": 3}) as r:
                assert r.status == 200
                body = await r.json()
            assert body["modelRef"] == "/model/llama2"
            assert body["routerPod"] == "router-test-0"
            assert body["usage"]["completion_tokens"] == 3
            assert isinstance(body["completion"], str) and body["completion"]
    # Every /infer went through the gateway to one of the replicas.
    records = await gw.access_log(4, lambda rec: rec["path"] == "/v1/completions")
    assert len(records) == 4
    assert {rec["endpoint"] for rec in records} <= set(fleet.addresses)
    assert all(rec["status"] == 200 and rec["model"] == "/model/llama2" for rec in records)

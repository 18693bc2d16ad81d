"""Seed 000/001 end to end: the seeds' manifests unmodified, a simulated /model/llama2 with the
seed's LoRA adapters, and Envoy's circuit-breaker semantics through the gateway."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import orjson
import pytest

from tests.e2e.gateway_fleet import SEED_LORAS, seed_000_config, start_fleet, start_gateway
from tests.support.processes import ProcessGroup

pytestmark = pytest.mark.e2e

OVERFLOW = "upstream connect error or disconnect/reset before headers. reset reason: overflow"
SEED_BODY = {
    "model": "/model/llama2",
    "max_completion_tokens": 100,
    "temperature": 0,
    "messages": [{"role": "user", "content": "introduce yourself"}],
}


async def _chat(session: aiohttp.ClientSession, url: str) -> tuple[int, str, str]:
    async with session.post(f"{url}/v1/chat/completions", json=SEED_BODY,
                            headers={"host": "example.com"}) as r:
        return r.status, r.headers.get("Content-Type", ""), await r.text()


async def test_two_concurrent_requests_one_served_one_overflow(procs: ProcessGroup,
                                                               tmp_path: Path) -> None:
    # The time scale keeps the first generation running while the second request arrives.
    fleet = start_fleet(procs, 1, loras=SEED_LORAS, time_scale=0.5)
    gw = start_gateway(procs, seed_000_config(tmp_path, fleet))

    async with aiohttp.ClientSession() as s:
        results = await asyncio.gather(_chat(s, gw.url), _chat(s, gw.url))
        statuses = sorted(r[0] for r in results)
        assert statuses == [200, 503], results
        ok = next(r for r in results if r[0] == 200)
        overflow = next(r for r in results if r[0] == 503)
        body = orjson.loads(ok[2])
        assert body["object"] == "chat.completion"
        assert body["model"] == "/model/llama2"
        assert body["choices"][0]["finish_reason"] == "length"
        assert body["usage"]["completion_tokens"] == 100
        assert overflow[2] == OVERFLOW
        assert overflow[1].startswith("text/plain")

        # Once both are done the breaker is free again.
        status, _, _ = await _chat(s, gw.url)
        assert status == 200

        # Envoy headers are off unless a ClientTrafficPolicy enables them.
        results = await asyncio.gather(
            s.post(f"{gw.url}/v1/chat/completions", json=SEED_BODY,
                   headers={"host": "example.com"}),
            s.post(f"{gw.url}/v1/chat/completions", json=SEED_BODY,
                   headers={"host": "example.com"}),
        )
        for r in results:
            assert "x-envoy-overloaded" not in r.headers
            await r.read()
            r.release()

        async with s.get(f"{gw.admin}/metrics") as m:
            text = await m.text()
        assert 'poolgate_circuit_breaker_overflows_total{' in text


async def test_envoy_headers_switch_adds_overloaded_header(procs: ProcessGroup,
                                                           tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1, time_scale=0.5)
    config = seed_000_config(tmp_path, fleet)
    (config / "client-traffic-policy.yaml").write_text(
        "apiVersion: gateway.envoyproxy.io/v1alpha1\n"
        "kind: ClientTrafficPolicy\n"
        "metadata: {name: envoy-headers, namespace: default}\n"
        "spec:\n"
        "  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: example-gateway}]\n"
        "  headers: {enableEnvoyHeaders: true}\n"
    )
    gw = start_gateway(procs, config)
    async with aiohttp.ClientSession() as s:
        responses = await asyncio.gather(
            s.post(f"{gw.url}/v1/chat/completions", json=SEED_BODY, headers={"host": "example.com"}),
            s.post(f"{gw.url}/v1/chat/completions", json=SEED_BODY, headers={"host": "example.com"}),
        )
        by_status = {r.status: r for r in responses}
        assert set(by_status) == {200, 503}
        assert by_status[503].headers.get("x-envoy-overloaded") == "true"
        assert "x-envoy-overloaded" not in by_status[200].headers
        for r in responses:
            await r.read()
            r.release()


async def test_wrong_host_gets_no_route(procs: ProcessGroup, tmp_path: Path) -> None:
    fleet = start_fleet(procs, 1)
    gw = start_gateway(procs, seed_000_config(tmp_path, fleet))
    async with aiohttp.ClientSession() as s, s.post(
        f"{gw.url}/v1/chat/completions", json=SEED_BODY, headers={"host": "other.example"}
    ) as r:
        assert r.status == 404
        body = await r.json()
        assert body["error"]["code"] == 404
        assert "No route" in body["error"]["message"]

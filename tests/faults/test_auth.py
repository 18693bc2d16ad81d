"""Authentication on and off, end to end: `poolgate serve` with a SecurityPolicy in front of a real
simulator fleet, driven by the official `openai` SDK (API key, JWT signed here with a key made
here), `poolgate validate` on policies it cannot enforce, and the router's API_KEYS_FILE. A key
or token never shows in what the gateway prints or serves."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import openai
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1ALPHA2_YAML,
    Fleet,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.e2e.router_process import start_router
from tests.support.processes import ProcessGroup, free_port, poolgate_command

pytestmark = pytest.mark.e2e

MODEL = "/model/llama2"
KEY, OTHER_KEY = "sk-team-a-5f0c2a9e1b7d", "sk-team-b-83d1f0aa2c64"
ISSUER = "https://issuer.example"

ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
---
"""

API_KEY_POLICY = f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: api-keys, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: route}}]
  apiKeyAuth:
    credentialRefs: [{{name: api-keys}}]
    extractFrom: [{{headers: [authorization]}}, {{params: [api_key]}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: api-keys, namespace: default}}
type: Opaque
stringData: {{team-a: {KEY}, team-b: {OTHER_KEY}}}
"""

JWT_POLICY = """\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {name: jwt, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  jwt:
    providers:
    - name: test-issuer
      issuer: %(issuer)s
      audiences: [poolgate]
      localJWKS: {type: ValueRef, valueRef: {group: "", kind: ConfigMap, name: jwks}}
      claimToHeaders: [{header: x-user, claim: sub}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: jwks, namespace: default}
data:
  jwks: '%(jwks)s'
"""

PROMPT = {"model": MODEL, "prompt": "hi", "max_tokens": 2}


@pytest.fixture
def fleet(procs: ProcessGroup) -> Fleet:
    return start_fleet(procs, 1)


def _gateway(procs: ProcessGroup, tmp_path: Path, fleet: Fleet, policy: str) -> RunningGateway:
    config = tmp_path / "config"
    config.mkdir(parents=True)
    (config / "gw.yaml").write_text(GATEWAY_YAML + ROUTE + POOL_V1ALPHA2_YAML + policy)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    return start_gateway(procs, config)


async def _complete(gw: RunningGateway, key: str, *, chat: bool = False) -> bool:
    """One request through the official SDK with `key` as its API key; whether it had choices."""
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=key, max_retries=0) as client:
        if chat:
            answer: Any = await client.chat.completions.create(
                model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
        else:
            answer = await client.completions.create(model=MODEL, prompt="hi", max_tokens=2)
    return bool(answer.choices)


async def _admin_pages(gw: RunningGateway) -> str:
    async with aiohttp.ClientSession() as s:
        pages = []
        for path in ("/status", "/metrics", "/readyz"):
            async with s.get(f"{gw.admin}{path}") as r:
                pages.append(await r.text())
    return "\n".join(pages)


async def test_api_key_from_the_openai_sdk_is_the_only_way_in(procs: ProcessGroup, fleet: Fleet,
                                                              tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet, API_KEY_POLICY)
    assert await _complete(gw, KEY)
    assert await _complete(gw, OTHER_KEY, chat=True)
    with pytest.raises(openai.AuthenticationError) as wrong:
        await _complete(gw, "sk-not-a-key")
    assert wrong.value.status_code == 401
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{gw.url}/v1/completions", json=PROMPT) as r:
            assert r.status == 401
            assert r.headers["www-authenticate"] == \
                f'Bearer realm="http://127.0.0.1:{gw.port}/v1/completions"'
            assert await r.text() == "Client authentication failed."
        async with s.post(f"{gw.url}/v1/completions?api_key={KEY}", json=PROMPT) as r:
            assert r.status == 200  # the second source of the policy: a query parameter
    records = await gw.access_log(5)
    assert [(rec["status"], rec.get("client")) for rec in records] == [
        (200, "team-a"), (200, "team-b"), (401, None), (401, None), (200, "team-a")]
    assert records[2]["error"] == "api_key_auth{unknown_api_key}"
    assert records[3]["error"] == "api_key_auth{missing_api_key}"
    assert records[4]["path"] == "/v1/completions?api_key=REDACTED"
    shown = gw.proc.output() + await _admin_pages(gw)
    assert KEY not in shown and OTHER_KEY not in shown


async def test_without_a_policy_no_key_is_needed(procs: ProcessGroup, fleet: Fleet,
                                                tmp_path: Path) -> None:
    gw = _gateway(procs, tmp_path, fleet, "")
    assert await _complete(gw, "anything")
    [rec] = await gw.access_log(1)
    assert rec["status"] == 200 and "client" not in rec


def _signing_key() -> tuple[Any, str]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = {**json.loads(RSAAlgorithm.to_jwk(private.public_key())), "kid": "k1", "alg": "RS256"}
    return private, json.dumps({"keys": [jwk]})


def _token(private: Any, **overrides: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": "poolgate", "sub": "alice@example.com", "iat": now,
               "exp": now + 600, **overrides}
    return jwt.encode(payload, private, algorithm="RS256", headers={"kid": "k1"})


async def test_jwt_signed_by_a_key_of_the_jwks_passes(procs: ProcessGroup, fleet: Fleet,
                                                      tmp_path: Path) -> None:
    private, jwks = _signing_key()
    gw = _gateway(procs, tmp_path, fleet, JWT_POLICY % {"issuer": ISSUER, "jwks": jwks})
    token = _token(private)
    assert await _complete(gw, token)
    realm = f'Bearer realm="http://127.0.0.1:{gw.port}/v1/completions"'
    cases = [
        ({}, 401, "Jwt is missing", realm),
        ({"authorization": f"Bearer {_token(private, exp=int(time.time()) - 120)}"}, 401,
         "Jwt is expired", realm + ', error="invalid_token"'),
        ({"authorization": f"Bearer {_token(private, aud='someone-else')}"}, 403,
         "Audiences in Jwt are not allowed", realm + ', error="invalid_token"'),
        ({"authorization": f"Bearer {_token(_signing_key()[0])}"}, 401,
         "Jwt verification fails", realm + ', error="invalid_token"'),
    ]
    async with aiohttp.ClientSession() as s:
        for headers, status, body, challenge in cases:
            async with s.post(f"{gw.url}/v1/completions", json=PROMPT, headers=headers) as r:
                assert (r.status, await r.text()) == (status, body)
                assert r.headers["www-authenticate"] == challenge
    records = await gw.access_log(5)
    assert records[0]["client"] == "alice@example.com"
    assert [rec["status"] for rec in records] == [200, 401, 401, 403, 401]
    assert token not in gw.proc.output()


def _validate(procs: ProcessGroup, path: Path, text: str) -> tuple[int, str]:
    path.mkdir(parents=True, exist_ok=True)
    (path / "gw.yaml").write_text(GATEWAY_YAML + ROUTE + POOL_V1ALPHA2_YAML + text)
    proc = procs.start(poolgate_command("validate", "-f", str(path)))
    return proc.proc.wait(timeout=60), proc.output()


def test_validate_no_longer_calls_an_unenforced_policy_valid(procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    code, out = _validate(procs, tmp_path / "ok", API_KEY_POLICY)
    assert code == 0, out
    assert "1 Secret, 1 SecurityPolicy" in out and "does not act on" not in out
    assert KEY not in out and OTHER_KEY not in out

    missing = API_KEY_POLICY.split("---\napiVersion: v1")[0]
    code, out = _validate(procs, tmp_path / "missing", missing)
    assert code == 1
    assert "spec.apiKeyAuth.credentialRefs[0]: Secret default/api-keys not found" in out

    basic = API_KEY_POLICY.replace("  apiKeyAuth:", "  basicAuth: {users: {name: htpasswd}}\n"
                                   "  unused:").split("---\napiVersion: v1")[0]
    code, out = _validate(procs, tmp_path / "basic", basic)
    assert code == 1 and out.strip().endswith("invalid")
    assert "poolgate enforces only apiKeyAuth and jwt" in out


async def test_router_key_file(procs: ProcessGroup, tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"team-a: {KEY}\n")
    router = start_router(procs, API_KEYS_FILE=str(keys), SIMULATED_LATENCY_MS="0")
    async with aiohttp.ClientSession() as s:
        async with s.post(f"{router.url}/infer", json={"prompt": "hi"}) as r:
            assert r.status == 401
            assert r.headers["WWW-Authenticate"] == 'Bearer realm="poolgate-router"'
            body = await r.json()
            assert body["error"]["code"] == 401 and "missing API key" in body["error"]["message"]
        async with s.post(f"{router.url}/infer", json={"prompt": "hi"},
                          headers={"Authorization": f"Bearer {KEY}x"}) as r:
            assert r.status == 401 and (await r.json())["error"]["message"] == "invalid API key"
        async with s.post(f"{router.url}/infer", json={"prompt": "hi"},
                          headers={"Authorization": f"Bearer {KEY}"}) as r:
            assert r.status == 200 and (await r.json())["prompt"] == "hi"
        async with s.get(f"{router.url}/readyz") as r:
            assert r.status == 200  # probes need no key
    assert KEY not in router.process.output()


def test_router_refuses_to_start_with_a_bad_key_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    keys.write_text(f"team-a {KEY}\n")
    env = {**os.environ, "MODEL_REF": "m", "PORT": str(free_port()), "HOST": "127.0.0.1",
           "API_KEYS_FILE": str(keys)}
    out = subprocess.run(poolgate_command("router"), env=env, capture_output=True, text=True,
                         timeout=30, check=False)
    assert out.returncode == 2
    assert f"configuration error: API_KEYS_FILE: {keys}:1: expected 'CLIENT_ID: KEY'" in out.stderr
    assert KEY not in out.stderr + out.stdout and "Traceback" not in out.stderr

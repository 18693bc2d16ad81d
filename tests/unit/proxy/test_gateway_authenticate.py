"""`Gateway.authenticate` between resolve and the body: 401 before anything reads the body or
goes upstream, the client id on the context and in the access log, the policy's edits upstream,
and nothing at all without a policy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from poolgate.config.build import load_snapshot
from poolgate.config.snapshot import Snapshot
from poolgate.http.client import ConnectionSettings, UpstreamResponse
from poolgate.http.server import RequestHeaders
from tests.unit.proxy._fakes import GATEWAY, Answer, FakeResponder, FakeUpstreams, gateway, records

A, B = "10.0.0.1:8000", "10.0.0.2:8000"
KEY = "sk-team-a-0123456789"
REQUEST = {"model": "m", "prompt": "hello there", "max_tokens": 2}

POLICY = f"""\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: keys, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: route}}]
  apiKeyAuth:
    credentialRefs: [{{name: api-keys}}]
    extractFrom: [{{headers: [authorization]}}, {{params: [api_key]}}]
    forwardClientIDHeader: x-client-id
---
apiVersion: v1
kind: Secret
metadata: {{name: api-keys, namespace: default}}
stringData: {{team-a: {KEY}}}
"""


def snapshot(tmp_path: Path, policy: str = POLICY) -> Snapshot:
    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY + policy)
    result = load_snapshot([path])
    assert result.snapshot is not None, [str(p) for p in result.problems]
    return result.snapshot


class Client(FakeResponder):
    """A client request with its own header lines and path."""

    def __init__(self, lines: list[tuple[str, str]], path: str = "/v1/completions",
                 body: dict[str, Any] | None = None, raw_body: bytes | None = None) -> None:
        super().__init__(REQUEST if body is None else body, path.partition("?")[0])
        self.raw_path = path
        raw = [("host", "gw"), ("content-type", "application/json"), *lines]
        self.headers = RequestHeaders(raw, {n.lower(): v for n, v in reversed(raw)})
        if raw_body is not None:
            self.body = raw_body


class Upstreams(FakeUpstreams):
    """Also records the path and headers each request went upstream with."""

    def __init__(self) -> None:
        super().__init__({A: [Answer()], B: [Answer()]})
        self.heads: list[tuple[str, list[tuple[str, str]]]] = []

    async def request(self, address: str, method: str, path: str,
                      headers: Iterable[tuple[str, str]], body: bytes,
                      settings: ConnectionSettings | None = None) -> UpstreamResponse:
        self.heads.append((path, list(headers)))
        return await super().request(address, method, path, headers, body, settings)


async def test_without_a_key_the_answer_is_401_and_nothing_goes_upstream(tmp_path: Path) -> None:
    upstreams = Upstreams()
    gw, log = gateway(snapshot(tmp_path), upstreams)
    client = Client([])
    await gw.handle(client, 80)
    assert (client.status, client.sent) == (401, b"Client authentication failed.")
    assert upstreams.heads == []
    [rec] = records(log)
    assert (rec["status"], rec["error"], rec["attempts"]) == (401, "api_key_auth{missing_api_key}",
                                                             0)
    assert "client" not in rec


async def test_authentication_comes_before_the_body_is_read(tmp_path: Path) -> None:
    gw, _ = gateway(snapshot(tmp_path), Upstreams())
    client = Client([("authorization", "Bearer sk-wrong")], raw_body=b"{not json")
    await gw.handle(client, 80)
    assert client.status == 401  # not the 400 a malformed body gets once authenticated


async def test_with_the_key_the_client_is_known_and_named_upstream(tmp_path: Path) -> None:
    upstreams = Upstreams()
    gw, log = gateway(snapshot(tmp_path), upstreams)
    client = Client([("Authorization", f"Bearer {KEY}"), ("x-client-id", "spoofed")])
    await gw.handle(client, 80)
    assert client.status == 200
    [(path, headers)] = upstreams.heads
    assert path == "/v1/completions"
    # As Envoy Gateway without `sanitize`: the key goes on; the client id header is the gateway's.
    assert ("Authorization", f"Bearer {KEY}") in headers
    assert [v for n, v in headers if n.lower() == "x-client-id"] == ["team-a"]
    assert records(log)[0]["client"] == "team-a"


async def test_a_key_in_the_query_string_is_never_logged(tmp_path: Path) -> None:
    gw, log = gateway(snapshot(tmp_path), Upstreams())
    client = Client([], path=f"/v1/completions?api_key={KEY}&x=1")
    await gw.handle(client, 80)
    assert client.status == 200
    [rec] = records(log)
    assert rec["path"] == "/v1/completions?api_key=REDACTED&x=1"
    assert KEY not in log.getvalue().decode()


async def test_without_a_policy_no_client_and_no_check(tmp_path: Path) -> None:
    gw, log = gateway(snapshot(tmp_path, ""), Upstreams())
    assert all(c.authenticator is None for c in gw.runtime.clusters.values())
    client = Client([])
    await gw.handle(client, 80)
    assert client.status == 200
    assert "client" not in records(log)[0]


async def test_a_reload_with_the_same_policy_keeps_its_authenticator(tmp_path: Path) -> None:
    gw, _ = gateway(snapshot(tmp_path), Upstreams())
    [before] = gw.runtime.authenticators.values()
    again = tmp_path / "again"
    again.mkdir()
    gw.swap(snapshot(again))
    assert list(gw.runtime.authenticators.values()) == [before]

"""In-memory stand-ins for the two sockets of the request path: the client (a `Responder`) and
the upstream connection pool. Everything between them is the real gateway."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from poolgate.config.build import load_snapshot
from poolgate.config.snapshot import Snapshot
from poolgate.http.client import ConnectionSettings, UpstreamFailure, UpstreamResponse
from poolgate.http.server import RequestHeaders
from poolgate.observability.access_log import AccessLog
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.gateway import Gateway, GatewayOptions

GATEWAY = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: poolgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp, port: {number: 9002}}
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: sims}
spec:
  labels: {app: sim}
  addresses: [10.0.0.1:8000, 10.0.0.2:8000]
"""

POLICY = """\
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: policy, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: route}]
"""


def snapshot(tmp_path: Path, policy: str = "") -> Snapshot:
    """The snapshot of one route to one two-endpoint pool, with `policy` (BackendTrafficPolicy
    spec lines) when given."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY + (POLICY + policy if policy else ""))
    result = load_snapshot([path])
    assert result.snapshot is not None, [str(p) for p in result.problems]
    return result.snapshot


class FakeConnection:
    """What an `UpstreamResponse` needs of its connection; records how it was ended."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.closed = False
        self.released = False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def response_released(self, response: UpstreamResponse) -> None:
        self.released = True

    def close(self) -> None:
        self.closed = True


@dataclass
class Answer:
    """A scripted upstream answer: a status and body, a failure, or a wait (then `status`)."""

    status: int = 200
    body: bytes = b'{"choices": []}'
    failure: str | None = None
    wait: asyncio.Event | None = None


@dataclass
class FakeUpstreams:
    """The upstream pool: answers each endpoint's requests from a script, records them."""

    script: dict[str, list[Answer]]
    sent: list[tuple[str, bytes]] = field(default_factory=list)
    connections: list[FakeConnection] = field(default_factory=list)

    async def request(self, address: str, method: str, path: str,
                      headers: Iterable[tuple[str, str]], body: bytes,
                      settings: ConnectionSettings | None = None) -> UpstreamResponse:
        self.sent.append((address, body))
        answers = self.script[address]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        conn = FakeConnection()
        self.connections.append(conn)
        if answer.wait is not None:
            try:
                await answer.wait.wait()
            except asyncio.CancelledError:
                conn.close()
                raise
        if answer.failure is not None:
            raise UpstreamFailure(answer.failure)
        response = UpstreamResponse(conn)  # type: ignore[arg-type]
        response.status = answer.status
        response.reason = "OK" if answer.status == 200 else "Error"
        response.headers = [("content-type", "application/json"),
                            ("content-length", str(len(answer.body)))]
        response.content_type = "application/json"
        response.content_length = len(answer.body)
        response._feed(answer.body)
        response._finish()
        return response

    async def close(self) -> None:
        pass


class FakeResponder:
    """A client request answered in memory."""

    def __init__(self, body: dict[str, Any] | None = None, path: str = "/v1/completions",
                 method: str = "POST") -> None:
        self.method = method
        self.raw_path = self.path = path
        self.body = orjson.dumps(body) if body is not None else b""
        self.body_too_large = False
        self.status = 0
        raw = [("host", "gw"), ("content-type", "application/json")]
        self.headers = RequestHeaders(raw, dict(raw))
        self.host = "gw"
        self.client_address = "192.0.2.7"
        self.query: dict[str, str] = {}
        self.sent = b""
        self.aborted = False
        self.ended = False

    @property
    def started(self) -> bool:
        return self.status != 0

    async def respond(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                      body: bytes, content_length: int | None = None) -> None:
        self.status, self.sent, self.ended = status, body, True

    async def start(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                    content_length: int | None = None) -> None:
        self.status = status

    async def write(self, data: bytes) -> None:
        self.sent += data

    async def end(self) -> None:
        self.ended = True

    def abort(self) -> None:
        self.aborted = True


def gateway(snap: Snapshot, upstreams: FakeUpstreams) -> tuple[Gateway, io.BytesIO]:
    """A gateway over `snap` whose upstream pool is `upstreams`; and its access log."""
    log = io.BytesIO()
    gw = Gateway(snap, GatewayOptions(seed=1), GatewayMetrics(), AccessLog(log))
    gw.upstreams = upstreams  # type: ignore[assignment]
    return gw, log


def records(log: io.BytesIO) -> list[dict[str, Any]]:
    """The access-log lines written so far."""
    return [orjson.loads(line) for line in log.getvalue().splitlines()]

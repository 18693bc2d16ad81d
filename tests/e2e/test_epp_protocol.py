"""`poolgate epp` spoken to as Envoy's ext_proc filter speaks to it (a gRPC client in the test
sends the messages Envoy sends), against a real simulated fleet. The same picker behind a real
Envoy is tested in tests/e2e/test_envoy_epp.py."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import grpc
import orjson
import pytest
from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.service.ext_proc.v3 import external_processor_pb2_grpc as pb_grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.e2e.gateway_fleet import GATEWAY_YAML, POOL_V1_YAML, start_fleet, write_endpoints
from tests.support.processes import ProcessGroup, ServerProcess, free_port, poolgate_command

pytestmark = pytest.mark.e2e

MODES = processing_mode_pb2.ProcessingMode
ROUTE = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v1}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: alias, namespace: default}
spec:
  modelName: food-review
  criticality: Sheddable
  poolRef: {name: pool}
  targetModels: [{name: /model/llama2, weight: 100}]
---
"""


def headers(items: Iterable[tuple[str, str]], end: bool = False) -> pb.HttpHeaders:
    return pb.HttpHeaders(end_of_stream=end, headers=base_pb2.HeaderMap(headers=[
        base_pb2.HeaderValue(key=k, raw_value=v.encode()) for k, v in items]))


def request_messages(body: dict[str, Any], *, duplex: bool = True, chunks: int = 2,
                     subset: list[str] | None = None) -> list[pb.ProcessingRequest]:
    raw = orjson.dumps(body)
    head = pb.ProcessingRequest(
        request_headers=headers([(":method", "POST"), (":path", "/v1/chat/completions"),
                                 (":authority", "gw.example"),
                                 ("content-type", "application/json"),
                                 ("content-length", str(len(raw)))]),
        protocol_config=pb.ProtocolConfiguration(
            request_body_mode=MODES.FULL_DUPLEX_STREAMED if duplex else MODES.BUFFERED,
            response_body_mode=MODES.STREAMED))
    if subset is not None:
        hint = struct_pb2.Struct()
        hint.update({"x-gateway-destination-endpoint-subset": subset})
        head.metadata_context.filter_metadata["envoy.lb.subset_hint"].CopyFrom(hint)
    if not duplex:
        chunks = 1
    size = -(-len(raw) // chunks)
    parts = [raw[i:i + size] for i in range(0, len(raw), size)]
    return [head] + [pb.ProcessingRequest(request_body=pb.HttpBody(
        body=part, end_of_stream=i == len(parts) - 1)) for i, part in enumerate(parts)]


def response_messages(status: int, served: str | None) -> list[pb.ProcessingRequest]:
    head = pb.ProcessingRequest(response_headers=headers([(":status", str(status))]))
    if served is not None:
        lb = struct_pb2.Struct()
        lb.update({"x-gateway-destination-endpoint-served": served})
        head.metadata_context.filter_metadata["envoy.lb"].CopyFrom(lb)
    return [head, pb.ProcessingRequest(response_body=pb.HttpBody(body=b"{}",
                                                                 end_of_stream=True))]


class Stream:
    """One ext_proc stream, driven message by message as Envoy would."""

    def __init__(self, stub: pb_grpc.ExternalProcessorStub) -> None:
        self._queue: asyncio.Queue[pb.ProcessingRequest | None] = asyncio.Queue()
        self._call = stub.Process(self._requests())

    async def _requests(self) -> AsyncIterator[pb.ProcessingRequest]:
        while (message := await self._queue.get()) is not None:
            yield message

    async def send(self, messages: Iterable[pb.ProcessingRequest], answers: int
                   ) -> list[pb.ProcessingResponse]:
        for m in messages:
            await self._queue.put(m)
        return [await asyncio.wait_for(self._call.read(), 10) for _ in range(answers)]

    async def close(self) -> None:
        await self._queue.put(None)
        await asyncio.wait_for(self._call.read(), 10)  # EOF


def destination(response: pb.ProcessingResponse) -> tuple[str, str]:
    """(the header value, the envoy.lb metadata value) a pick carries."""
    common = (response.request_headers.response if response.HasField("request_headers")
              else response.request_body.response)
    header = next(h.header.raw_value.decode() for h in common.header_mutation.set_headers
                  if h.header.key == "x-gateway-destination-endpoint")
    meta = response.dynamic_metadata.fields["envoy.lb"].struct_value.fields[
        "x-gateway-destination-endpoint"].string_value
    return header, meta


async def eventually_serving(channel: grpc.aio.Channel, service: str) -> None:
    stub = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + 20
    while True:
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=2)
            if reply.status == health_pb2.HealthCheckResponse.SERVING:
                return
        except grpc.aio.AioRpcError:
            pass
        assert time.monotonic() < deadline, f"{service} never SERVING"
        await asyncio.sleep(0.1)


def start_epp(procs: ProcessGroup, config: Path, *extra: str) -> tuple[ServerProcess, int]:
    port = free_port()
    proc = procs.start(poolgate_command(
        "epp", "-f", str(config), "--grpc-port", str(port), "--host", "127.0.0.1",
        "--admin-port", str(free_port()), "--seed", "1", *extra))
    return proc, port


@pytest.fixture
def config(tmp_path: Path, procs: ProcessGroup) -> tuple[Path, list[str]]:
    fleet = start_fleet(procs, 3)
    directory = tmp_path / "config"
    directory.mkdir()
    (directory / "pool.yaml").write_text(GATEWAY_YAML + ROUTE + POOL_V1_YAML)
    write_endpoints(directory, {"app": "sim"}, fleet.addresses)
    return directory, fleet.addresses


async def test_full_duplex_pick_rewrite_and_feedback(
        procs: ProcessGroup, config: tuple[Path, list[str]]) -> None:
    directory, addresses = config
    proc, port = start_epp(procs, directory)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        for service in ("liveness", "readiness", "envoy.service.ext_proc.v3.ExternalProcessor"):
            await eventually_serving(channel, service)
        stub = pb_grpc.ExternalProcessorStub(channel)
        body = {"model": "food-review", "messages": [{"role": "user", "content": "hi"}]}

        stream = Stream(stub)
        head, streamed = await stream.send(request_messages(body), answers=2)
        header, meta = destination(head)
        assert header == meta and header in addresses
        # The model rewrite: the body streamed back names the target model, its length fixed.
        sent = streamed.request_body.response.body_mutation.streamed_response
        assert sent.end_of_stream
        assert orjson.loads(sent.body)["model"] == "/model/llama2"
        lengths = [h.header.raw_value.decode() for h in
                   head.request_headers.response.header_mutation.set_headers
                   if h.header.key == "content-length"]
        assert lengths == [str(len(sent.body))]
        answers = await stream.send(response_messages(200, header), answers=2)
        assert answers[0].HasField("response_headers") and answers[1].HasField("response_body")
        await stream.close()

        # Buffered mode: one body message, answered with the pick and the rewritten body.
        stream = Stream(stub)
        answers = await stream.send(request_messages(body, duplex=False), answers=2)
        assert answers[0].HasField("request_headers")  # continue: the body comes next
        header, meta = destination(answers[1])
        assert header == meta
        assert orjson.loads(answers[1].request_body.response.body_mutation.body)["model"] \
            == "/model/llama2"
        await stream.send(response_messages(200, None), answers=2)
        await stream.close()

        # A subset hint: the pick stays inside it; an empty intersection is a 503.
        stream = Stream(stub)
        (head, _) = await stream.send(request_messages(body, subset=[addresses[2]]), answers=2)
        assert destination(head)[0] == addresses[2]
        await stream.send(response_messages(200, addresses[2]), answers=2)
        await stream.close()
        stream = Stream(stub)
        (refused,) = await stream.send(request_messages(body, subset=["10.9.9.9:1"]), answers=1)
        assert refused.immediate_response.status.code == 503
        await stream.close()

        # No route: a 404 with the gateway's body.
        stream = Stream(stub)
        messages = request_messages(body)
        messages[0].request_headers.headers.headers[1].raw_value = b"/elsewhere"
        (refused,) = await stream.send(messages, answers=1)
        assert refused.immediate_response.status.code == 404
        assert b"No route matches POST gw.example/elsewhere" in refused.immediate_response.body
        await stream.close()
    proc.stop()
    records = [orjson.loads(line) for line in proc.output().splitlines() if line.startswith("{")]
    picked = [r for r in records if r.get("status") == 200]
    assert len(picked) == 3 and all(r["model"] == "food-review" for r in picked)
    assert all(r.get("target_model") == "/model/llama2" for r in picked)


async def test_shed_429_and_no_endpoint_503(procs: ProcessGroup,
                                            config: tuple[Path, list[str]]) -> None:
    directory, _ = config
    # --saturation-queue 0: no endpoint ever has fewer than 0 waiting, so the pool is always
    # saturated and the Sheddable model is shed.
    proc, port = start_epp(procs, directory, "--saturation-queue", "0")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await eventually_serving(channel, "readiness")
        stub = pb_grpc.ExternalProcessorStub(channel)
        stream = Stream(stub)
        body = {"model": "food-review", "messages": [{"role": "user", "content": "hi"}]}
        (shed,) = await stream.send(request_messages(body), answers=1)
        await stream.close()
        assert shed.immediate_response.status.code == 429
        error = orjson.loads(shed.immediate_response.body)["error"]
        assert error["type"] == "RateLimitError" and error["code"] == "system_saturated"
        # A model no InferenceModel names has no criticality: not shed.
        stream = Stream(stub)
        (head, _) = await stream.send(request_messages({**body, "model": "/model/llama2"}), 2)
        assert destination(head)[0]
        await stream.send(response_messages(200, None), answers=2)
        await stream.close()
    proc.stop()

    empty = directory.parent / "empty"
    empty.mkdir()
    (empty / "pool.yaml").write_text(GATEWAY_YAML + ROUTE + POOL_V1_YAML)
    proc, port = start_epp(procs, empty)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await eventually_serving(channel, "liveness")
        stream = Stream(pb_grpc.ExternalProcessorStub(channel))
        (refused,) = await stream.send(request_messages(body), answers=1)
        await stream.close()
        assert refused.immediate_response.status.code == 503
        assert refused.immediate_response.body == b"no healthy upstream"
    proc.stop()

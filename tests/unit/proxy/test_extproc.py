"""`Exchange`: the ext_proc message flow of one request, over a recording picker (no gRPC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import cast

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from google.protobuf import struct_pb2

from poolgate.proxy.cluster import Runtime
from poolgate.proxy.context import RequestContext
from poolgate.proxy.extproc import Exchange, ExtProcRequest, Held, Pick, served_endpoint
from poolgate.scheduling.errors import RequestShed

MODES = processing_mode_pb2.ProcessingMode


@dataclass
class RecordingPicker:
    stream: bool = False
    refuse: bool = False
    max_body: int = 1000
    bodies: list[bytes] = field(default_factory=list)
    served_log: list[tuple[str, int]] = field(default_factory=list)
    finished: int = 0

    def context(self, request: ExtProcRequest) -> RequestContext:
        return RequestContext(request, 0, 0.0, cast(Runtime, None))

    def decide(self, ctx: RequestContext, subset: frozenset[str] | None,
               backend_key: str | None) -> Pick:
        if self.refuse:
            raise RequestShed()
        self.bodies.append(ctx.request.body)
        return Pick(("10.0.0.1:8000", "10.0.0.2:8000"), b'{"model":"target"}',
                    Held("10.0.0.1:8000", self.stream, self.stream))

    def served(self, ctx: RequestContext, held: Held, endpoint: str, status: int) -> None:
        self.served_log.append((endpoint, status))

    def finish(self, ctx: RequestContext, held: Held | None) -> None:
        self.finished += 1


def head(duplex: bool, end: bool = False) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(
        request_headers=pb.HttpHeaders(end_of_stream=end, headers=base_pb2.HeaderMap(headers=[
            base_pb2.HeaderValue(key=":method", raw_value=b"POST"),
            base_pb2.HeaderValue(key=":path", raw_value=b"/v1/completions?x=1"),
            base_pb2.HeaderValue(key=":authority", raw_value=b"example.com"),
            base_pb2.HeaderValue(key="Content-Type", raw_value=b"application/json")])),
        protocol_config=pb.ProtocolConfiguration(
            request_body_mode=MODES.FULL_DUPLEX_STREAMED if duplex else MODES.BUFFERED,
            response_body_mode=MODES.STREAMED))


def body(data: bytes, end: bool) -> pb.ProcessingRequest:
    return pb.ProcessingRequest(request_body=pb.HttpBody(body=data, end_of_stream=end))


def test_the_request_view_reads_pseudo_headers() -> None:
    request = ExtProcRequest([(":method", "GET"), (":path", "/v1/models?a=b%20c"),
                              (":authority", "h.example"), ("X-Key", "v")])
    assert (request.method, request.path, request.raw_path) == ("GET", "/v1/models",
                                                                "/v1/models?a=b%20c")
    assert request.query == {"a": "b c"} and request.host == "h.example"
    assert request.headers.get("x-key") == "v" and ":path" not in request.headers


def test_full_duplex_waits_for_the_body_then_answers_headers_and_body() -> None:
    picker = RecordingPicker()
    exchange = Exchange(picker)
    assert exchange.on_message(head(duplex=True)) == []
    assert exchange.on_message(body(b'{"model":', end=False)) == []
    headers, streamed = exchange.on_message(body(b'"alias"}', end=True))
    assert picker.bodies == [b'{"model":"alias"}']  # parsed once, whole
    set_headers = {h.header.key: h.header.raw_value for h in
                   headers.request_headers.response.header_mutation.set_headers}
    assert set_headers == {"x-gateway-destination-endpoint": b"10.0.0.1:8000,10.0.0.2:8000",
                           "content-length": b"18"}
    lb = headers.dynamic_metadata.fields["envoy.lb"].struct_value
    assert lb.fields["x-gateway-destination-endpoint"].string_value == \
        "10.0.0.1:8000,10.0.0.2:8000"
    sent = streamed.request_body.response.body_mutation.streamed_response
    assert (sent.body, sent.end_of_stream) == (b'{"model":"target"}', True)
    # Not streamed: the response body is not asked for.
    assert headers.mode_override.response_body_mode == MODES.NONE


def test_a_streamed_response_is_followed_to_its_end() -> None:
    picker = RecordingPicker(stream=True)
    exchange = Exchange(picker)
    exchange.on_message(head(duplex=False))
    (answer,) = exchange.on_message(body(b'{"model":"alias","stream":true}', end=True))
    assert not answer.HasField("mode_override")
    assert answer.request_body.response.body_mutation.body == b'{"model":"target"}'
    lb = struct_pb2.Struct()
    lb.update({"x-gateway-destination-endpoint-served": "10.0.0.2:8000"})
    response_head = pb.ProcessingRequest(response_headers=pb.HttpHeaders(
        headers=base_pb2.HeaderMap(headers=[base_pb2.HeaderValue(key=":status",
                                                                 raw_value=b"200")])))
    response_head.metadata_context.filter_metadata["envoy.lb"].CopyFrom(lb)
    exchange.on_message(response_head)
    assert picker.served_log == [("10.0.0.2:8000", 200)]
    for end in (False, True):
        (chunk,) = exchange.on_message(pb.ProcessingRequest(
            response_body=pb.HttpBody(body=b"data: {}\n\n", end_of_stream=end)))
        assert chunk.response_body.response.status == pb.CommonResponse.CONTINUE
    assert picker.finished == 1
    exchange.close()  # the stream's end after the response's: nothing more
    assert picker.finished == 1


def test_a_refusal_is_an_immediate_response_and_ends_the_request() -> None:
    picker = RecordingPicker(refuse=True)
    exchange = Exchange(picker)
    (refused,) = exchange.on_message(head(duplex=True, end=True))
    assert refused.immediate_response.status.code == 429
    assert b"RateLimitError" in refused.immediate_response.body
    assert picker.finished == 1


def test_a_body_over_the_limit_is_413() -> None:
    picker = RecordingPicker(max_body=4)
    exchange = Exchange(picker)
    exchange.on_message(head(duplex=True))
    (refused,) = exchange.on_message(body(b"0123456789", end=True))
    assert refused.immediate_response.status.code == 413
    assert picker.bodies == []


def test_the_served_endpoint_may_come_as_an_attribute() -> None:
    message = pb.ProcessingRequest()
    attrs = struct_pb2.Struct()
    attrs.update({"upstream.address": "10.0.0.3:8000"})
    message.attributes["envoy.filters.http.ext_proc"].CopyFrom(attrs)
    assert served_endpoint(message) == "10.0.0.3:8000"
    assert served_endpoint(pb.ProcessingRequest()) is None

"""The endpoint-picker side of Envoy's external processing (ext_proc) for one HTTP request.

`Exchange` takes the `ProcessingRequest` messages Envoy sends on one stream and returns the
`ProcessingResponse` messages to answer with; it knows nothing of gRPC (`epp.py` serves it). It
speaks the Inference Extension's endpoint-picker protocol (docs/epp.md):

- request headers, then the body (one message when Envoy buffers it, several in
  `FULL_DUPLEX_STREAMED`, where the answer carries the whole body back): the body is parsed once,
  the InferenceModel's rewrite applied, the request shed (429) or refused (503) as `poolgate
  serve` would, and the picked endpoint returned in the `x-gateway-destination-endpoint` header
  and in dynamic metadata `envoy.lb` (the same value: the pick, then fallbacks when the route
  retries), optionally only among `envoy.lb.subset_hint`'s `x-gateway-destination-endpoint-subset`;
- the response: the endpoint that served (metadata `envoy.lb`
  `x-gateway-destination-endpoint-served`, or the `upstream.address` attribute), its status
  (the prefix index learns from a non-5xx answer; a stream's head is its first token, as in
  `poolgate serve`), and the end of the response (in-flight counts end) — or the stream's end,
  whichever comes first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import parse_qsl, unquote

from envoy.config.core.v3 import base_pb2
from envoy.extensions.filters.http.ext_proc.v3 import processing_mode_pb2
from envoy.service.ext_proc.v3 import external_processor_pb2 as pb
from envoy.type.v3 import http_status_pb2
from google.protobuf import struct_pb2

from poolgate.core.epp_protocol import (
    DESTINATION,
    EXT_PROC_FILTER,
    LB_NAMESPACE,
    SERVED,
    SUBSET,
    SUBSET_NAMESPACE,
)
from poolgate.core.errors import PoolgateError
from poolgate.http.server import RequestHeaders
from poolgate.proxy.context import Attempt, RequestContext
from poolgate.proxy.errors import BodyTooLarge, InternalError, NoRoute

_FULL_DUPLEX = processing_mode_pb2.ProcessingMode.FULL_DUPLEX_STREAMED
_OVERWRITE = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
_CONTINUE = pb.CommonResponse(status=pb.CommonResponse.CONTINUE)
_HEAD_ONLY = processing_mode_pb2.ProcessingMode(
    response_header_mode=processing_mode_pb2.ProcessingMode.SEND,
    response_body_mode=processing_mode_pb2.ProcessingMode.NONE,
    response_trailer_mode=processing_mode_pb2.ProcessingMode.SKIP)


class ExtProcRequest:
    """The request as the endpoint picker sees it, in the shape the gateway's stages read
    (`Responder`'s request side). The picker never answers through it: refusals go back to
    Envoy as an ImmediateResponse."""

    __slots__ = ("_client", "_headers", "_host", "_query", "body", "body_too_large", "method",
                 "path", "raw_path", "status")

    def __init__(self, headers: Iterable[tuple[str, str]], client_address: str = "") -> None:
        regular: list[tuple[str, str]] = []
        first: dict[str, str] = {}
        pseudo: dict[str, str] = {}
        for name, value in headers:
            if name.startswith(":"):
                pseudo[name] = value
                continue
            regular.append((name, value))
            first.setdefault(name.lower(), value)
        self.method = pseudo.get(":method", "GET")
        self.raw_path = pseudo.get(":path", "/")
        raw, _, query = self.raw_path.partition("?")
        self.path = unquote(raw)
        self._query = dict(parse_qsl(query, keep_blank_values=True)) if query else {}
        self._host = pseudo.get(":authority") or first.get("host", "")
        self._headers = RequestHeaders(regular, first)
        self._client = client_address
        self.body = b""
        self.body_too_large = False
        self.status = 0

    @property
    def headers(self) -> RequestHeaders:
        return self._headers

    @property
    def host(self) -> str:
        return self._host

    @property
    def client_address(self) -> str:
        return self._client

    @property
    def query(self) -> Mapping[str, str]:
        return self._query

    @property
    def started(self) -> bool:
        return False

    async def respond(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                      body: bytes, content_length: int | None = None) -> None:
        raise RuntimeError("the endpoint picker answers through Envoy, not the request")

    async def start(self, status: int, reason: str, headers: Iterable[tuple[str, str]],
                    content_length: int | None = None) -> None:
        raise RuntimeError("the endpoint picker answers through Envoy, not the request")

    async def write(self, data: bytes) -> None:
        raise RuntimeError("the endpoint picker answers through Envoy, not the request")

    async def end(self) -> None:
        raise RuntimeError("the endpoint picker answers through Envoy, not the request")

    def abort(self) -> None:
        raise RuntimeError("the endpoint picker answers through Envoy, not the request")


@dataclass(slots=True)
class Held:
    """The in-flight count a picked request holds on its endpoint until it ends."""

    endpoint: str
    streamed: bool
    awaiting: bool  # a stream whose response head has not arrived yet


@dataclass(frozen=True, slots=True)
class Pick:
    """What the picker decided for one request: the endpoints in order (pick, then fallbacks),
    the body to send upstream when it changed (the model rewrite), and what it holds."""

    endpoints: tuple[str, ...]
    body: bytes | None
    held: Held


class Picker(Protocol):
    """What an `Exchange` needs of the gateway (implemented by `epp.EndpointPicker`)."""

    @property
    def max_body(self) -> int:
        """The largest request body read (413 above)."""
        ...

    def context(self, request: ExtProcRequest) -> RequestContext:
        """A new request context on the current configuration."""
        ...

    def decide(self, ctx: RequestContext, subset: frozenset[str] | None,
               backend_key: str | None) -> Pick:
        """Resolve, inspect, shed and pick; raises a `PoolgateError` to refuse. `backend_key`:
        the backendRef Envoy chose (`poolgate envoy-config` sends it), else the route decides."""
        ...

    def served(self, ctx: RequestContext, held: Held, endpoint: str, status: int) -> None:
        """The response head arrived from `endpoint` (perhaps a fallback)."""
        ...

    def finish(self, ctx: RequestContext, held: Held | None) -> None:
        """The request ended (once): in-flight counts, metrics, access log."""
        ...


def header_items(headers: pb.HttpHeaders) -> list[tuple[str, str]]:
    """(name, value) of an ext_proc header map (`raw_value` as Envoy sends it, else `value`)."""
    out = []
    for h in headers.headers.headers:
        value = h.raw_value.decode("latin-1") if h.raw_value else h.value
        out.append((h.key, value))
    return out


def _set_headers(items: Iterable[tuple[str, str]]) -> pb.HeaderMutation:
    return pb.HeaderMutation(set_headers=[
        base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, raw_value=v.encode()),
                                   append_action=_OVERWRITE)
        for k, v in items])


def immediate(error: PoolgateError) -> pb.ProcessingResponse:
    """The ImmediateResponse refusing a request with the gateway's own status and body."""
    reply = error.reply()
    headers = [("content-type", reply.content_type), *reply.headers]
    return pb.ProcessingResponse(immediate_response=pb.ImmediateResponse(
        status=http_status_pb2.HttpStatus(code=reply.status), headers=_set_headers(headers),
        body=reply.body, details=f"poolgate_epp_{reply.status}"))


def _metadata_value(metadata: Any, namespace: str, key: str) -> Any:
    """A value of `metadata.filter_metadata[namespace][key]` (a protobuf Struct), or None."""
    if namespace not in metadata.filter_metadata:
        return None
    fields = metadata.filter_metadata[namespace].fields
    if key not in fields:
        return None
    value = fields[key]
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "list_value":
        return [v.string_value for v in value.list_value.values]
    return None


def subset_hint(request: pb.ProcessingRequest) -> frozenset[str] | None:
    """The endpoints Envoy allows (`envoy.lb.subset_hint`), or None when it sets no subset."""
    value = _metadata_value(request.metadata_context, SUBSET_NAMESPACE, SUBSET)
    if value is None:
        return None
    items = value if isinstance(value, list) else str(value).split(",")
    return frozenset(i.strip() for i in items if i.strip())


def served_endpoint(request: pb.ProcessingRequest) -> str | None:
    """The endpoint that answered: `envoy.lb` / `x-gateway-destination-endpoint-served`, or the
    `upstream.address` attribute Envoy can attach to the response headers."""
    value = _metadata_value(request.metadata_context, LB_NAMESPACE, SERVED)
    if isinstance(value, str) and value:
        return value
    if EXT_PROC_FILTER in request.attributes:
        fields = request.attributes[EXT_PROC_FILTER].fields
        if "upstream.address" in fields:
            return fields["upstream.address"].string_value or None
    return None


class Exchange:
    """One ext_proc stream: see the module docstring. `on_message` returns the responses to
    send (none while a streamed request body is still arriving); `close` ends it (idempotent)."""

    __slots__ = ("_backend_key", "_body", "_buffered", "_clock", "_closed", "_ctx",
                 "_full_duplex_request", "_full_duplex_response", "_pick", "_picker", "_request",
                 "_started", "_subset")

    def __init__(self, picker: Picker, clock: Callable[[], float] = time.monotonic,
                 backend_key: str | None = None) -> None:
        self._picker = picker
        self._backend_key = backend_key
        self._clock = clock
        self._ctx: RequestContext | None = None
        self._request: ExtProcRequest | None = None
        self._body: list[bytes] = []
        self._buffered = 0
        self._subset: frozenset[str] | None = None
        self._pick: Pick | None = None
        self._full_duplex_request = False
        self._full_duplex_response = False
        self._closed = False
        self._started = clock()

    def on_message(self, message: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        """The answers to one message from Envoy."""
        if message.HasField("protocol_config"):
            config = message.protocol_config
            self._full_duplex_request = config.request_body_mode == _FULL_DUPLEX
            self._full_duplex_response = config.response_body_mode == _FULL_DUPLEX
        kind = message.WhichOneof("request")
        if kind == "request_headers":
            return self._request_headers(message)
        if kind == "request_body":
            return self._request_body(message)
        if kind == "request_trailers":
            return [pb.ProcessingResponse(request_trailers=pb.TrailersResponse())]
        if kind == "response_headers":
            return self._response_headers(message)
        if kind == "response_body":
            return self._response_body(message)
        if kind == "response_trailers":
            self.close()
            return [pb.ProcessingResponse(response_trailers=pb.TrailersResponse())]
        return []

    # -- request ---------------------------------------------------------------------------------

    def _request_headers(self, message: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        self._request = ExtProcRequest(header_items(message.request_headers))
        self._subset = subset_hint(message)
        if message.request_headers.end_of_stream:
            return self._decide(phase="headers")
        if self._full_duplex_request:
            return []  # the headers are answered with the pick, once the body is in
        return [pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=_CONTINUE))]

    def _request_body(self, message: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        body = message.request_body
        if self._request is None:
            return [immediate(InternalError("ext_proc: a request body before its headers"))]
        self._buffered += len(body.body)
        if self._buffered <= self._picker.max_body:
            self._body.append(body.body)
        else:
            self._request.body_too_large = True
        if not body.end_of_stream:
            if self._full_duplex_request:
                return []
            return [pb.ProcessingResponse(request_body=pb.BodyResponse(response=_CONTINUE))]
        self._request.body = b"".join(self._body)
        self._body.clear()
        return self._decide(phase="full-duplex" if self._full_duplex_request else "buffered")

    def _decide(self, phase: str) -> list[pb.ProcessingResponse]:
        request = self._request
        assert request is not None
        picker = self._picker
        ctx = self._ctx = picker.context(request)
        try:
            if request.body_too_large:
                raise BodyTooLarge("The request body is larger than the endpoint picker's "
                                   f"limit of {picker.max_body} bytes.")
            pick = picker.decide(ctx, self._subset, self._backend_key)
        except PoolgateError as e:
            ctx.outcome.status = e.status
            if e.status >= 500 or e.flag != "-":
                ctx.outcome.error = e.message
            if isinstance(e, NoRoute):
                ctx.outcome.flag = "NR"
            self.close()
            return [immediate(e)]
        self._pick = pick
        ctx.attempts.append(Attempt(pick.endpoints[0]))
        value = ",".join(pick.endpoints)
        metadata = struct_pb2.Struct()
        metadata.update({LB_NAMESPACE: {DESTINATION: value}})
        set_headers = [(DESTINATION, value)]
        body = pick.body if pick.body is not None else request.body
        if phase != "headers" and (pick.body is not None or phase == "full-duplex"):
            set_headers.append(("content-length", str(len(body))))
        mutation = pb.CommonResponse(header_mutation=_set_headers(set_headers),
                                     clear_route_cache=False)
        # A response that is not streamed ends with its head (a model server sends the whole
        # body at once when generation is done): its body need not come here at all. Envoy 1.40
        # applies this only when the filter allows mode overrides and neither body mode is
        # FULL_DUPLEX_STREAMED (docs/epp.md); otherwise it ignores it and the body comes.
        override = None if pick.held.streamed or self._full_duplex_response else _HEAD_ONLY
        if phase == "headers":
            return [pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=mutation),
                                          dynamic_metadata=metadata, mode_override=override)]
        if phase == "full-duplex":
            # Envoy sends upstream the body this answer streams back, not the one it received.
            return [
                pb.ProcessingResponse(request_headers=pb.HeadersResponse(response=mutation),
                                      dynamic_metadata=metadata, mode_override=override),
                pb.ProcessingResponse(request_body=pb.BodyResponse(response=pb.CommonResponse(
                    body_mutation=pb.BodyMutation(streamed_response=pb.StreamedBodyResponse(
                        body=body, end_of_stream=True))))),
            ]
        if pick.body is not None:
            mutation.body_mutation.body = pick.body
        return [pb.ProcessingResponse(request_body=pb.BodyResponse(response=mutation),
                                      dynamic_metadata=metadata, mode_override=override)]

    # -- response --------------------------------------------------------------------------------

    def _response_headers(self, message: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        ctx, pick = self._ctx, self._pick
        if ctx is not None and pick is not None:
            status = 0
            for name, value in header_items(message.response_headers):
                if name == ":status":
                    status = int(value) if value.isdigit() else 0
                    break
            endpoint = served_endpoint(message) or pick.endpoints[0]
            ctx.outcome.status = status
            ctx.outcome.ttfb = self._clock() - self._started
            if ctx.attempts and ctx.attempts[-1].endpoint != endpoint:
                ctx.attempts.append(Attempt(endpoint))
            ctx.attempts[-1].status = status
            self._picker.served(ctx, pick.held, endpoint, status)
        if message.response_headers.end_of_stream:
            self.close()
        return [pb.ProcessingResponse(response_headers=pb.HeadersResponse(response=_CONTINUE))]

    def _response_body(self, message: pb.ProcessingRequest) -> list[pb.ProcessingResponse]:
        body = message.response_body
        if body.end_of_stream:
            self.close()
        if self._full_duplex_response:
            return [pb.ProcessingResponse(response_body=pb.BodyResponse(response=pb.CommonResponse(
                body_mutation=pb.BodyMutation(streamed_response=pb.StreamedBodyResponse(
                    body=body.body, end_of_stream=body.end_of_stream)))))]
        return [pb.ProcessingResponse(response_body=pb.BodyResponse(response=_CONTINUE))]

    def close(self) -> None:
        """The request is over (response end, refusal, or the stream went away)."""
        if self._closed:
            return
        self._closed = True
        if self._ctx is not None:
            self._picker.finish(self._ctx, self._pick.held if self._pick is not None else None)

"""Per-message cost of the candidate Python gRPC stacks for an Envoy ext_proc server (issue 15).

`python -m benchmarks.grpc_stack [--requests N] [--repeats R] [--stacks A,B]` (from the
repository root) prints markdown tables.

One simulated HTTP request is one `envoy.service.ext_proc.v3.ExternalProcessor/Process` bidi
stream carrying what Envoy sends the Inference Extension's endpoint picker in buffered mode:
`request_headers` (11 headers, end_of_stream false), one `request_body` (a ~1 KB JSON chat
body, end_of_stream true), `response_headers`, then 3 SSE-sized `response_body` chunks (~200
bytes, the last with end_of_stream true). Each message is sent only once the previous one was
answered, as Envoy does. The server answers every message with the matching
ProcessingResponse: the `request_body` answer carries a header mutation setting
`x-gateway-destination-endpoint: 10.0.0.1:8000` (plus `clear_route_cache`) and the dynamic
metadata `{"envoy.lb": {"x-gateway-destination-endpoint": "10.0.0.1:8000"}}`; the others an empty
CommonResponse. The handler reads the headers into a dict and the bodies' bytes, nothing more
(no JSON parsing, no pick), so the figures are the gRPC stack's own cost.

Every stack runs in its own server process (pinned to one CPU when two are usable), driven by a
separate client process (grpc.aio with pre-serialised requests and raw-bytes responses, pinned
to the other CPU), N streams in flight. The server's CPU is read from /proc/PID/stat
(utime + stime, all threads) around the measured phase, after a warm-up. "µs/msg" is µs/request
divided by the 6 message exchanges; "µs per extra chunk" is the slope between 3 and 23
response_body chunks per stream at 16 streams in flight, the marginal cost of one more
streamed chunk. The codec table times decoding, handling and encoding the same messages
in-process, without any transport.

Candidates (a stack whose packages are missing is skipped with a note):
- grpcio-aio: `grpc.aio` server, protobuf (upb) types from `xds-protos`;
- grpcio-aio-uvloop: the same on uvloop;
- grpcio-sync: `grpc.server` with a thread pool (one worker per open stream), same types;
- grpclib-betterproto2: `grpclib` (pure-Python HTTP/2 on asyncio), `envoy-data-plane`
  (betterproto2) types; the service glue is written here, as for grpclib-upb;
- grpclib-betterproto2-uvloop: the same on uvloop;
- grpclib-upb: grpclib with the xds-protos types, to separate transport from codec cost.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.suite.processes import free_port
from poolgate.bench.cpu import cpu_seconds

PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
DEST_HEADER = "x-gateway-destination-endpoint"
ENDPOINT = "10.0.0.1:8000"
CHUNKS = 3
MANY_CHUNKS = 23
CONCURRENCY = (1, 16, 64)
SLOPE_CONCURRENCY = 16
ROOT = Path(__file__).resolve().parents[1]

REQUEST_HEADERS = (
    (":authority", "gateway.example.com"),
    (":path", "/v1/chat/completions"),
    (":method", "POST"),
    (":scheme", "http"),
    ("content-type", "application/json"),
    ("content-length", "1024"),
    ("accept", "application/json"),
    ("user-agent", "OpenAI/Python 1.40.0"),
    ("authorization", "Bearer sk-0123456789abcdef0123456789abcdef"),
    ("x-request-id", "5f0c2a52-8a4e-4b9f-9d3e-3b0f6f1f2a7c"),
    ("x-forwarded-proto", "http"),
)
RESPONSE_HEADERS = (
    (":status", "200"),
    ("content-type", "text/event-stream; charset=utf-8"),
    ("date", "Tue, 02 Jun 2026 10:00:00 GMT"),
    ("server", "uvicorn"),
    ("x-envoy-upstream-service-time", "12"),
)


def chat_body(size: int = 1024) -> bytes:
    """A JSON chat completion request of exactly `size` bytes."""
    head = ('{"model":"llama-3-8b","stream":true,"max_tokens":256,"messages":['
            '{"role":"system","content":"You are a careful assistant."},'
            '{"role":"user","content":"')
    tail = '"}]}'
    filler = "Summarise the maintenance manual section on pumps. " * 40
    return (head + filler[: size - len(head) - len(tail)] + tail).encode()


def sse_chunk(i: int, last: bool) -> bytes:
    """One ~200-byte server-sent event of a streamed chat completion (the last adds [DONE])."""
    data = ('{"id":"chatcmpl-7f3a","object":"chat.completion.chunk","created":1780000000,'
            '"model":"llama-3-8b","choices":[{"index":0,"delta":{"content":" token' + f"{i:04d}"
            + '"},"finish_reason":null}]}')
    return f"data: {data}\n\n".encode() + (b"data: [DONE]\n\n" if last else b"")


def _module(name: str) -> Any:
    """Import a third-party module as `Any` (none of them ship types mypy can use here)."""
    return importlib.import_module(name)


def request_messages(chunks: int = CHUNKS) -> list[bytes]:
    """The serialised ProcessingRequests of one simulated HTTP request, in order."""
    pb = _module("envoy.service.ext_proc.v3.external_processor_pb2")
    base = _module("envoy.config.core.v3.base_pb2")

    def headers(pairs: Sequence[tuple[str, str]]) -> Any:
        return pb.HttpHeaders(headers=base.HeaderMap(headers=[
            base.HeaderValue(key=k, raw_value=v.encode()) for k, v in pairs]), end_of_stream=False)

    out = [pb.ProcessingRequest(request_headers=headers(REQUEST_HEADERS)),
           pb.ProcessingRequest(request_body=pb.HttpBody(body=chat_body(), end_of_stream=True)),
           pb.ProcessingRequest(response_headers=headers(RESPONSE_HEADERS))]
    out += [pb.ProcessingRequest(response_body=pb.HttpBody(
        body=sse_chunk(i, i == chunks - 1), end_of_stream=i == chunks - 1)) for i in range(chunks)]
    return [bytes(m.SerializeToString()) for m in out]


# --- the handler, once per codec -----------------------------------------------------------


@dataclass(slots=True)
class StreamState:
    """What the handler keeps per stream: what a picker would read."""

    headers: dict[str, bytes] = field(default_factory=dict)
    body: bytes = b""
    status: bytes = b""
    chunks: int = 0
    done: bool = False


class Codec:
    """Message types and the per-message handler of one protobuf implementation."""

    name = ""
    request_type: Any
    response_type: Any

    def respond(self, req: Any, state: StreamState) -> Any:
        raise NotImplementedError

    def encode(self, message: Any) -> bytes:
        return bytes(message.SerializeToString())


class UpbCodec(Codec):
    """Generated protobuf modules of `xds-protos` (protobuf's upb backend)."""

    name = "protobuf (upb)"

    def __init__(self) -> None:
        self.pb = _module("envoy.service.ext_proc.v3.external_processor_pb2")
        self.base = _module("envoy.config.core.v3.base_pb2")
        self.struct = _module("google.protobuf.struct_pb2")
        self.request_type = self.pb.ProcessingRequest
        self.response_type = self.pb.ProcessingResponse

    def respond(self, req: Any, state: StreamState) -> Any:
        pb = self.pb
        kind = req.WhichOneof("request")
        if kind == "request_headers":
            state.headers = {h.key: h.raw_value for h in req.request_headers.headers.headers}
            return pb.ProcessingResponse(
                request_headers=pb.HeadersResponse(response=pb.CommonResponse()))
        if kind == "request_body":
            state.body += req.request_body.body
            return self._picked()
        if kind == "response_headers":
            for h in req.response_headers.headers.headers:
                if h.key == ":status":
                    state.status = h.raw_value
            return pb.ProcessingResponse(
                response_headers=pb.HeadersResponse(response=pb.CommonResponse()))
        if kind == "response_body":
            state.chunks += len(req.response_body.body) > 0
            state.done = req.response_body.end_of_stream
            return pb.ProcessingResponse(response_body=pb.BodyResponse(response=pb.CommonResponse()))
        raise ValueError(f"unexpected ProcessingRequest {kind}")

    def _picked(self) -> Any:
        pb, base, st = self.pb, self.base, self.struct
        mutation = pb.HeaderMutation(set_headers=[base.HeaderValueOption(
            header=base.HeaderValue(key=DEST_HEADER, raw_value=ENDPOINT.encode()))])
        metadata = st.Struct(fields={"envoy.lb": st.Value(struct_value=st.Struct(
            fields={DEST_HEADER: st.Value(string_value=ENDPOINT)}))})
        return pb.ProcessingResponse(
            request_body=pb.BodyResponse(response=pb.CommonResponse(
                header_mutation=mutation, clear_route_cache=True)),
            dynamic_metadata=metadata)


class BetterprotoCodec(Codec):
    """betterproto2 dataclasses (pydantic-validated) of `envoy-data-plane`."""

    name = "betterproto2"

    def __init__(self) -> None:
        self.bp = _module("betterproto2")
        self.ep = _module("envoy_data_plane.envoy.service.ext_proc.v3")
        self.core = _module("envoy_data_plane.envoy.config.core.v3")
        self.gp = _module("envoy_data_plane.google.protobuf")
        self.request_type = self.ep.ProcessingRequest
        self.response_type = self.ep.ProcessingResponse

    def respond(self, req: Any, state: StreamState) -> Any:
        ep = self.ep
        kind, value = self.bp.which_one_of(req, "request")
        if kind == "request_headers":
            state.headers = {h.key: h.raw_value for h in value.headers.headers}
            return ep.ProcessingResponse(
                request_headers=ep.HeadersResponse(response=ep.CommonResponse()))
        if kind == "request_body":
            state.body += value.body
            return self._picked()
        if kind == "response_headers":
            for h in value.headers.headers:
                if h.key == ":status":
                    state.status = h.raw_value
            return ep.ProcessingResponse(
                response_headers=ep.HeadersResponse(response=ep.CommonResponse()))
        if kind == "response_body":
            state.chunks += len(value.body) > 0
            state.done = value.end_of_stream
            return ep.ProcessingResponse(response_body=ep.BodyResponse(response=ep.CommonResponse()))
        raise ValueError(f"unexpected ProcessingRequest {kind}")

    def _picked(self) -> Any:
        ep, core, gp = self.ep, self.core, self.gp
        mutation = ep.HeaderMutation(set_headers=[core.HeaderValueOption(
            header=core.HeaderValue(key=DEST_HEADER, raw_value=ENDPOINT.encode()))])
        metadata = gp.Struct(fields={"envoy.lb": gp.Value(struct_value=gp.Struct(
            fields={DEST_HEADER: gp.Value(string_value=ENDPOINT)}))})
        return ep.ProcessingResponse(
            request_body=ep.BodyResponse(response=ep.CommonResponse(
                header_mutation=mutation, clear_route_cache=True)),
            dynamic_metadata=metadata)


CODECS: dict[str, Callable[[], Codec]] = {"upb": UpbCodec, "betterproto2": BetterprotoCodec}


# --- the candidate servers -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stack:
    name: str
    server: str  # "aio" | "sync" | "grpclib"
    codec: str  # key of CODECS
    uvloop: bool
    modules: tuple[str, ...]  # what must be importable

    def missing(self) -> list[str]:
        return [m for m in self.modules if importlib.util.find_spec(m) is None]


_XDS = "envoy.service.ext_proc.v3"
_BP2 = "envoy_data_plane"
STACKS = {s.name: s for s in (
    Stack("grpcio-aio", "aio", "upb", False, ("grpc", _XDS)),
    Stack("grpcio-aio-uvloop", "aio", "upb", True, ("grpc", _XDS, "uvloop")),
    Stack("grpcio-sync", "sync", "upb", False, ("grpc", _XDS)),
    Stack("grpclib-betterproto2", "grpclib", "betterproto2", False, ("grpclib", _BP2)),
    Stack("grpclib-betterproto2-uvloop", "grpclib", "betterproto2", True,
          ("grpclib", _BP2, "uvloop")),
    Stack("grpclib-upb", "grpclib", "upb", False, ("grpclib", _XDS)),
)}


def _run_loop(main: Callable[[], Any], use_uvloop: bool) -> None:
    factory = _module("uvloop").new_event_loop if use_uvloop else None
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())


def _ready() -> None:
    print("ready", flush=True)


def _grpcio_handler(codec: Codec, sync: bool) -> Any:
    grpc = _module("grpc")

    def process_sync(requests: Iterator[Any], _context: Any) -> Iterator[Any]:
        state = StreamState()
        for req in requests:
            yield codec.respond(req, state)

    async def process_aio(requests: Any, _context: Any) -> Any:
        state = StreamState()
        async for req in requests:
            yield codec.respond(req, state)

    handler = grpc.stream_stream_rpc_method_handler(
        process_sync if sync else process_aio,
        request_deserializer=codec.request_type.FromString,
        response_serializer=codec.response_type.SerializeToString)
    return grpc.method_handlers_generic_handler(SERVICE, {"Process": handler})


def serve_grpcio_sync(port: int, codec: Codec, workers: int = 128) -> None:
    """grpc.server: a thread per open stream, so the pool must exceed the streams in flight."""
    grpc = _module("grpc")
    futures = _module("concurrent.futures")
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers))
    server.add_generic_rpc_handlers((_grpcio_handler(codec, sync=True),))
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    signal.signal(signal.SIGTERM, lambda *_: server.stop(0))
    _ready()
    server.wait_for_termination()


def serve_grpcio_aio(port: int, codec: Codec, use_uvloop: bool) -> None:
    grpc = _module("grpc")

    async def main() -> None:
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_grpcio_handler(codec, sync=False),))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        _ready()
        await stop.wait()
        await server.stop(0)

    _run_loop(main, use_uvloop)


class GrpclibService:
    """Hand-written grpclib glue (what betterproto2's generated ServiceBase does, minus a layer)."""

    def __init__(self, codec: Codec) -> None:
        self.codec = codec

    def __mapping__(self) -> dict[str, Any]:
        const = _module("grpclib.const")
        return {PATH: const.Handler(self.process, const.Cardinality.STREAM_STREAM,
                                    self.codec.request_type, self.codec.response_type)}

    async def process(self, stream: Any) -> None:
        state = StreamState()
        respond = self.codec.respond
        async for req in stream:
            await stream.send_message(respond(req, state))


def serve_grpclib(port: int, codec: Codec, use_uvloop: bool) -> None:
    grpclib_server = _module("grpclib.server")

    async def main() -> None:
        server = grpclib_server.Server([GrpclibService(codec)])
        await server.start("127.0.0.1", port)
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, server.close)
        _ready()
        await server.wait_closed()

    _run_loop(main, use_uvloop)


def serve(stack: Stack, port: int) -> None:
    codec = CODECS[stack.codec]()
    if stack.server == "sync":
        serve_grpcio_sync(port, codec)
    elif stack.server == "aio":
        serve_grpcio_aio(port, codec, stack.uvloop)
    else:
        serve_grpclib(port, codec, stack.uvloop)


# --- the client ----------------------------------------------------------------------------


async def _one_stream(method: Any, messages: Sequence[bytes], aio: Any,
                      ok: Any) -> tuple[float, list[bytes]]:
    """One ping-pong stream; seconds from opening it to its OK status, and the replies."""
    start = time.perf_counter()
    call = method()
    replies: list[bytes] = []
    for message in messages:
        await call.write(message)
        reply = await call.read()
        if reply is aio.EOF:
            raise RuntimeError(f"stream ended early: {await call.code()} {await call.details()}")
        replies.append(reply)
    await call.done_writing()
    if await call.read() is not aio.EOF:
        raise RuntimeError("more replies than requests")
    if (code := await call.code()) != ok:
        raise RuntimeError(f"stream status {code}")
    return time.perf_counter() - start, replies


async def _streams(method: Any, messages: Sequence[bytes], concurrency: int,
                   total: int) -> list[float]:
    grpc = _module("grpc")
    latencies: list[float] = []
    left = total

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            seconds, _ = await _one_stream(method, messages, grpc.aio, grpc.StatusCode.OK)
            latencies.append(seconds)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


def check_replies(replies: Sequence[bytes], chunks: int) -> None:
    """The replies decode (with upb) to the expected kinds, the pick in the body answer."""
    pb = _module("envoy.service.ext_proc.v3.external_processor_pb2")
    kinds = [pb.ProcessingResponse.FromString(r).WhichOneof("response") for r in replies]
    want = ["request_headers", "request_body", "response_headers"] + ["response_body"] * chunks
    picked = pb.ProcessingResponse.FromString(replies[1])
    header = picked.request_body.response.header_mutation.set_headers[0].header
    lb = picked.dynamic_metadata.fields["envoy.lb"].struct_value.fields[DEST_HEADER]
    if kinds != want or header.raw_value != ENDPOINT.encode() or lb.string_value != ENDPOINT:
        raise RuntimeError(f"unexpected replies: {kinds} {header} {lb}")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def drive(port: int, server_pid: int, concurrency: int, requests: int,
                chunks: int) -> dict[str, Any]:
    """Warm up, then time `requests` streams with `concurrency` in flight; the server's CPU."""
    grpc = _module("grpc")
    messages = request_messages(chunks)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await channel.channel_ready()
        method = channel.stream_stream(PATH)  # bytes in, bytes out: no client codec cost
        _, replies = await _one_stream(method, messages, grpc.aio, grpc.StatusCode.OK)
        check_replies(replies, chunks)
        await _streams(method, messages, concurrency, max(200, requests // 10))
        cpu0, own0, t0 = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        latencies = await _streams(method, messages, concurrency, requests)
        elapsed = time.perf_counter() - t0
        cpu = cpu_seconds(server_pid) - cpu0
        own = time.process_time() - own0
    return {"concurrency": concurrency, "chunks": chunks, "requests": requests,
            "elapsed": elapsed, "server_cpu": cpu, "client_cpu": own,
            "us_per_request": cpu * 1e6 / requests, "rps": requests / elapsed,
            "p50_ms": _percentile(latencies, 0.5) * 1e3,
            "p99_ms": _percentile(latencies, 0.99) * 1e3}


# --- in-process codec cost -----------------------------------------------------------------


def _best_us(fn: Callable[[], object], iterations: int, rounds: int = 5) -> float:
    best = float("inf")
    per_round = max(1, iterations // rounds)
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        best = min(best, (time.perf_counter() - start) / per_round)
    return best * 1e6


def codec_cost(codec: Codec, iterations: int) -> dict[str, float]:
    """µs per simulated request (6 messages each way) to decode, handle and encode."""
    wire = request_messages()
    requests = [codec.request_type.FromString(m) for m in wire]
    state = StreamState()
    responses = [codec.respond(r, state) for r in requests]
    decode = codec.request_type.FromString
    respond, encode = codec.respond, codec.encode
    out = {
        "decode": _best_us(lambda: [decode(m) for m in wire], iterations),
        "handle": _best_us(lambda: [respond(r, StreamState()) for r in requests], iterations),
        "encode": _best_us(lambda: [encode(r) for r in responses], iterations),
    }
    out["total"] = out["decode"] + out["handle"] + out["encode"]
    return out


# --- the runner ----------------------------------------------------------------------------


def _pin(cpu: int | None) -> None:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})


def _cpus(no_pin: bool) -> tuple[int | None, int | None]:
    """(server CPU, client CPU): one each when two are usable, else no pinning."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if no_pin or len(usable) < 2:
        return None, None
    return usable[1], usable[0]


def _role_args(cpu: int | None) -> list[str]:
    return [sys.executable, "-m", "benchmarks.grpc_stack",
            *([] if cpu is None else ["--cpu", str(cpu)])]


@contextlib.contextmanager
def server_process(stack: Stack, cpu: int | None) -> Iterator[tuple[int, int]]:
    """Start one server; yields (pid, port); stops it by its pid."""
    port = free_port()
    proc = subprocess.Popen([*_role_args(cpu), "--serve", stack.name, "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"{stack.name} server did not start (exit {proc.poll()})")
        yield proc.pid, port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_client(pid: int, port: int, cpu: int | None, concurrency: int, requests: int,
               chunks: int) -> dict[str, Any]:
    out = subprocess.run(
        [*_role_args(cpu), "--drive", "--port", str(port), "--server-pid", str(pid),
         "--concurrency", str(concurrency), "--requests", str(requests), "--chunks", str(chunks)],
        cwd=ROOT, capture_output=True, text=True, timeout=900, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"client failed ({out.returncode}): {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure_stack(stack: Stack, requests: int, concurrencies: Sequence[int],
                  no_pin: bool) -> list[dict[str, Any]]:
    """One server session: every concurrency, then the many-chunks run for the slope."""
    server_cpu, client_cpu = _cpus(no_pin)
    results = []
    with server_process(stack, server_cpu) as (pid, port):
        for c in concurrencies:
            results.append(run_client(pid, port, client_cpu, c, requests, CHUNKS))
        results.append(run_client(pid, port, client_cpu, SLOPE_CONCURRENCY,
                                  max(300, requests // 2), MANY_CHUNKS))
    for r in results:
        r["stack"] = stack.name
        print(f"  {stack.name:28} c={r['concurrency']:<3} chunks={r['chunks']:<3} "
              f"{r['us_per_request']:8.0f} µs/req {r['rps']:8.0f} req/s "
              f"p50 {r['p50_ms']:.2f} ms", file=sys.stderr, flush=True)
    return results


# --- the report ----------------------------------------------------------------------------


def _pair(values: Sequence[float], fmt: str = "{:.0f}") -> str:
    return " / ".join(fmt.format(v) for v in values)


def _runs(results: Sequence[dict[str, Any]], stack: str, c: int, chunks: int) -> list[dict[str, Any]]:
    return [r for r in results if r["stack"] == stack and r["concurrency"] == c
            and r["chunks"] == chunks]


def transport_table(results: Sequence[dict[str, Any]], stacks: Sequence[str],
                    concurrencies: Sequence[int]) -> list[str]:
    lines = ["| stack | streams in flight | server CPU µs/request | µs/msg | requests/s "
             "| server CPU busy | client CPU busy |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for stack in stacks:
        for c in concurrencies:
            runs = _runs(results, stack, c, CHUNKS)
            us = [r["us_per_request"] for r in runs]
            busy = [100 * r["server_cpu"] / r["elapsed"] for r in runs]
            client = [100 * r["client_cpu"] / r["elapsed"] for r in runs]
            lines.append(f"| {stack} | {c} | {_pair(us)} | {_pair([u / (3 + CHUNKS) for u in us])} "
                         f"| {_pair([r['rps'] for r in runs])} | {_pair(busy, '{:.0f}%')} "
                         f"| {_pair(client, '{:.0f}%')} |")
    return lines


def latency_table(results: Sequence[dict[str, Any]], stacks: Sequence[str]) -> list[str]:
    lines = ["| stack | stream p50 ms (1 in flight) | stream p99 ms | µs per extra chunk "
             f"({SLOPE_CONCURRENCY} in flight) |", "|---|---:|---:|---:|"]
    for stack in stacks:
        few = _runs(results, stack, 1, CHUNKS)
        slopes = [(m["us_per_request"] - f["us_per_request"]) / (MANY_CHUNKS - CHUNKS)
                  for f, m in zip(_runs(results, stack, SLOPE_CONCURRENCY, CHUNKS),
                                  _runs(results, stack, SLOPE_CONCURRENCY, MANY_CHUNKS),
                                  strict=False)]
        lines.append(f"| {stack} | {_pair([r['p50_ms'] for r in few], '{:.2f}')} "
                     f"| {_pair([r['p99_ms'] for r in few], '{:.2f}')} | {_pair(slopes)} |")
    return lines


def codec_table(costs: dict[str, list[dict[str, float]]]) -> list[str]:
    lines = ["| codec | decode 6 requests µs | handle (build 6 responses) µs "
             "| encode 6 responses µs | total µs/request |", "|---|---:|---:|---:|---:|"]
    for name, runs in costs.items():
        cells = [_pair([r[k] for r in runs], "{:.1f}") for k in ("decode", "handle", "encode",
                                                                   "total")]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    return lines


def run_all(requests: int, repeats: int, stack_names: Sequence[str],
            concurrencies: Sequence[int], no_pin: bool) -> str:
    notes: list[str] = []
    stacks: list[Stack] = []
    for name in stack_names:
        if missing := STACKS[name].missing():
            notes.append(f"- {name}: skipped, not importable: {', '.join(missing)}")
        else:
            stacks.append(STACKS[name])
    costs: dict[str, list[dict[str, float]]] = {}
    for key in dict.fromkeys(s.codec for s in stacks):
        codec = CODECS[key]()
        costs[codec.name] = [codec_cost(codec, requests) for _ in range(repeats)]
    results: list[dict[str, Any]] = []
    for rep in range(repeats):  # the runs of one stack are apart in time, not back to back
        print(f"run {rep + 1}/{repeats}", file=sys.stderr, flush=True)
        for stack in stacks:
            results += measure_stack(stack, requests, concurrencies, no_pin)
    names = [s.name for s in stacks]
    server_cpu, _ = _cpus(no_pin)
    pinning = "server and client pinned to one CPU each" if server_cpu is not None else "unpinned"
    out = [f"## ext_proc gRPC stacks: {requests} requests per run, {repeats} runs per cell "
           f"(run 1 / run 2 ...), {pinning}", "",
           f"One request = one stream of {3 + CHUNKS} message exchanges; µs/msg = µs/request "
           f"/ {3 + CHUNKS}.", "", *transport_table(results, names, concurrencies), "",
           *latency_table(results, names), "",
           "In-process codec cost (best of 5 rounds, µs per simulated request):", "",
           *codec_table(costs)]
    return "\n".join([*out, "", *notes] if notes else out)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.grpc_stack", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--requests", type=int, default=3000, help="simulated requests per run")
    p.add_argument("--repeats", type=int, default=2, help="runs of every configuration")
    p.add_argument("--stacks", default=",".join(STACKS), help="comma-separated, of: "
                   + ", ".join(STACKS))
    p.add_argument("--concurrency", default=",".join(map(str, CONCURRENCY)),
                   help="streams in flight, comma-separated")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and client CPUs")
    # The two child roles.
    p.add_argument("--serve", choices=sorted(STACKS), help=argparse.SUPPRESS)
    p.add_argument("--drive", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--server-pid", type=int, help=argparse.SUPPRESS)
    p.add_argument("--chunks", type=int, default=CHUNKS, help=argparse.SUPPRESS)
    p.add_argument("--cpu", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    _pin(args.cpu)
    if args.serve:
        serve(STACKS[args.serve], args.port)
        return 0
    if args.drive:
        result = asyncio.run(drive(args.port, args.server_pid, int(args.concurrency),
                                   args.requests, args.chunks))
        print(json.dumps(result))
        return 0
    names = [n.strip() for n in args.stacks.split(",") if n.strip()]
    if unknown := [n for n in names if n not in STACKS]:
        p.error(f"unknown stacks: {', '.join(unknown)}")
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    if SLOPE_CONCURRENCY not in concurrencies:
        concurrencies.append(SLOPE_CONCURRENCY)
    print(run_all(args.requests, args.repeats, names, concurrencies, args.no_pin))
    return 0


if __name__ == "__main__":
    sys.exit(main())

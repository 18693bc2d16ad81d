"""`poolgate epp` behind the real Envoy (issue 15, item 3).

Real processes on 127.0.0.1: a `poolgate sim` fleet of three replicas, `poolgate epp` on the
manifests below, and Envoy started from the bootstrap `poolgate envoy-config` renders for them
(what users run; tests/e2e/envoy_epp_stack.py). Clients: the `openai` SDK for chat and streamed
completions, aiohttp for raw status, headers and bytes. Which replica served a request is read
from Envoy's access log (`endpoint` is `%UPSTREAM_HOST%`), the picker's access log and `/status`.

The fleet, the picker and one Envoy are shared by the module; tests that need another picker
(`--saturation-queue 0`, a picker killed) or another Envoy (a subset-hint source) start their own
next to the shared fleet.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import orjson
import pytest

from tests.e2e.envoy_epp_stack import (
    Envoy,
    Picker,
    Record,
    http_filters,
    post,
    start_envoy,
    start_picker,
)
from tests.e2e.gateway_fleet import SEED_LORAS, Fleet, start_fleet, write_endpoints
from tests.support.processes import ProcessGroup, process_group

pytestmark = pytest.mark.e2e

# A port nothing listens on (refused at once on loopback). As an address, `127.0.0.1:1` sorts
# before every other 127.0.0.1 address, which the round-robin picker visits in sorted order.
DEAD = "127.0.0.1:1"

MANIFESTS = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: poolgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: main, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: main}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: main, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp}
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: food-review, namespace: default}
spec:
  modelName: food-review
  criticality: Critical
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: main}
  targetModels: [{name: /model/llama2, weight: 100}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: sql-reviews, namespace: default}
spec:
  modelName: sql-reviews
  criticality: Standard
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: main}
  targetModels: [{name: sql-lora, weight: 100}]
---
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferenceModel
metadata: {name: batch-reviews, namespace: default}
spec:
  modelName: batch-reviews
  criticality: Sheddable
  poolRef: {group: inference.networking.k8s.io, kind: InferencePool, name: main}
  targetModels: [{name: /model/llama2, weight: 100}]
---
# One dead endpoint and two live ones, retried on connect failures. The round-robin profile
# picks endpoints without looking at their metrics; the default profile would never pick the
# dead endpoint (its /metrics never answers: fresh-metrics-filter), so no fallback would be used.
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: flaky, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [flaky.example]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: flaky}]
---
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: retry-connect, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: flaky}]
  retry:
    numRetries: 2
    retryOn: {triggers: [connect-failure]}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: flaky
  namespace: default
  annotations: {poolgate.dev/scheduler-profile: round-robin}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: flaky}}
  endpointPickerRef: {name: epp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: empty, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [empty.example]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: empty}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: empty, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: nobody}}
  endpointPickerRef: {name: epp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: gone, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [gone.example]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: gone}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: gone, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: gone}}
  endpointPickerRef: {name: epp}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: open, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [open.example]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: open}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: open, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp, failureMode: FailOpen}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: closed, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [closed.example]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: closed}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: closed, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp, failureMode: FailClose}
"""

MAIN, FLAKY = "default/main", "default/flaky"
POOLS = (MAIN, FLAKY, "default/empty", "default/gone", "default/open", "default/closed")
SHED_BODY = {"error": {"message": "system saturated, sheddable request dropped",
                       "type": "RateLimitError", "param": None, "code": "system_saturated"}}
# Envoy's own answer when the connection to the picked endpoint is refused.
CONNECT_FAILURE = (b"upstream connect error or disconnect/reset before headers. "
                   b"reset reason: remote connection failure")
# The model server's per-request values in a body: the completion id and the creation time.
UPSTREAM_VALUES = re.compile(rb'"id":"chatcmpl-[0-9a-f]+"|"created":\d+')
# A long shared prompt prefix (the prefix-cache index works in blocks of 16 tokens).
PREFIX = " ".join(f"Rule {i}: answer the customer politely and cite the order number."
                  for i in range(40))


def chat(content: str, max_tokens: int = 4, model: str = "/model/llama2",
         **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens, **extra}


@dataclass
class Stack:
    """The module's fleet, picker and Envoy, and where the manifests are."""

    manifests: Path
    fleet: Fleet
    picker: Picker
    envoy: Envoy

    def client(self) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=f"{self.envoy.url}/v1", api_key="unused",
                                  max_retries=0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("envoy-epp")
    with process_group(tmp) as procs:
        # Slowed tenfold (20 ms a token) so that a long stream stays open while a test looks at
        # it; four tokens a streamed chunk keep the ext_proc messages of those streams few.
        fleet = start_fleet(procs, 3, loras=SEED_LORAS, time_scale=0.1,
                            extra=["--stream-interval", "4", "--kv-cache-blocks", "4096",
                                   "--max-model-len", "4096"])
        manifests = tmp / "manifests"
        manifests.mkdir()
        (manifests / "pools.yaml").write_text(MANIFESTS)
        write_endpoints(manifests, {"app": "sim"}, fleet.addresses)
        write_endpoints(manifests, {"app": "flaky"}, [DEAD, *fleet.addresses[1:]], name="flaky")
        write_endpoints(manifests, {"app": "gone"}, [DEAD], name="gone")
        picker = start_picker(procs, manifests)
        envoy = start_envoy(procs, tmp, manifests, picker)
        yield Stack(manifests, fleet, picker, envoy)


@pytest.fixture
def own_procs(stack: Stack, tmp_path: Path) -> Iterator[ProcessGroup]:
    """Processes of one test, next to the module's (stopped by PID at its end)."""
    with process_group(tmp_path) as procs:
        yield procs


async def nothing_in_flight(picker: Picker) -> None:
    """Poll the picker's `/status` until no endpoint of any pool has a request in flight (the
    served-endpoint feedback and the end of every response reached it)."""
    for pool in POOLS:
        await picker.wait_endpoints(
            pool, lambda eps: all(e["in_flight"] == 0 and e["awaiting_first_token"] == 0
                                  for e in eps.values()), "nothing in flight")


def total_in_flight(n: int) -> Callable[[dict[str, Record]], bool]:
    """A `/status` condition: `n` requests in flight in the pool, none awaiting its head."""
    return lambda eps: (sum(e["in_flight"] for e in eps.values()) == n
                        and all(e["awaiting_first_token"] == 0 for e in eps.values()))


async def envoy_endpoints(envoy: Envoy, before: int, count: int) -> list[str]:
    """The `%UPSTREAM_HOST%` of Envoy's `count` requests after its first `before`."""
    records = await envoy.records(before + count)
    return [r["endpoint"] for r in records[before:before + count]]


# -- 1. chat and streamed chat ------------------------------------------------------------------


async def test_chat_and_streamed_chat_through_envoy_and_the_picker(stack: Stack) -> None:
    client = stack.client()
    try:
        done = await client.chat.completions.create(
            model="/model/llama2", messages=[{"role": "user", "content": "hello"}], max_tokens=8)
        assert done.object == "chat.completion" and done.model == "/model/llama2"
        assert done.choices[0].finish_reason == "length"
        assert done.choices[0].message.content
        assert done.usage is not None and done.usage.completion_tokens == 8

        stream = await client.chat.completions.create(
            model="/model/llama2", messages=[{"role": "user", "content": "hello"}],
            max_tokens=12, stream=True, stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    finally:
        await client.close()
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert len(text.split()) == 12  # the simulator's tokens are words
    assert [c.choices[0].finish_reason for c in chunks if c.choices and
            c.choices[0].finish_reason] == ["length"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 12

    # The SSE bytes as the client reads them: the model server's events, unchanged (only the
    # completion id and creation time differ between two requests), then [DONE].
    body = chat("hi", 12, stream=True, temperature=0)
    status, headers, raw = await post(stack.envoy.url, body)
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    _, _, direct = await post(stack.fleet.urls[0], body)
    frames = raw.split(b"\n\n")
    assert frames[-2:] == [b"data: [DONE]", b""]
    assert all(f.startswith(b"data: {") for f in frames[:-2])
    assert UPSTREAM_VALUES.sub(b"", raw) == UPSTREAM_VALUES.sub(b"", direct)
    assert orjson.loads(frames[-3].removeprefix(b"data: "))["choices"][0]["finish_reason"] \
        == "length"

    # Envoy sent each request where the picker said, and the picker learnt who served.
    await nothing_in_flight(stack.picker)
    envoy = (await stack.envoy.settled())[-3:]
    picker = stack.picker.logged()[-3:]
    assert [r["endpoint"] for r in envoy] == [r["endpoint"] for r in picker]
    assert {r["endpoint"] for r in envoy} <= set(stack.fleet.addresses)
    assert all(r["status"] == 200 and r["attempts"] == 1 for r in picker)


# -- 2. prefix affinity and load ----------------------------------------------------------------


@contextlib.asynccontextmanager
async def held_streams(client: openai.AsyncOpenAI, picker: Picker, prompts: list[str],
                       ) -> AsyncIterator[None]:
    """Long streams opened one after the other, each once the picker has its first token (so
    each pick sees the ones before it as in flight, none awaiting), closed on exit."""
    streams = []
    try:
        for i, prompt in enumerate(prompts, start=1):
            stream = await client.chat.completions.create(
                model="/model/llama2", messages=[{"role": "user", "content": prompt}],
                max_tokens=1500, stream=True, extra_body={"ignore_eos": True})
            streams.append(stream)
            await stream.__anext__()
            await picker.wait_endpoints(MAIN, total_in_flight(i), f"{i} streams answered")
        yield
    finally:
        for stream in streams:
            await stream.close()


async def test_pick_follows_prefix_affinity_and_load(stack: Stack) -> None:
    client, picker, envoy = stack.client(), stack.picker, stack.envoy

    async def ask(prompt: str) -> None:
        done = await client.chat.completions.create(
            model="/model/llama2", messages=[{"role": "user", "content": prompt}], max_tokens=2)
        assert done.choices[0].finish_reason == "length"

    try:
        before = len(await envoy.settled())
        # Requests sharing a long prompt prefix land where the first one was served.
        for i in range(4):
            await ask(f"{PREFIX} Question {i}: where is my order?")
        served = await envoy_endpoints(envoy, before, 4)
        home = served[0]
        assert served == [home] * 4

        # Three long streams with that prefix join them there: 3 in flight is within the
        # affinity's load bound.
        prompts = [f"{PREFIX} Stream {i}: tell me everything." for i in range(3)]
        async with held_streams(client, picker, prompts):
            endpoints = await picker.endpoints(MAIN)
            assert {a: e["in_flight"] for a, e in endpoints.items()} == \
                {a: 3 if a == home else 0 for a in stack.fleet.addresses}
            # Requests without the prefix go elsewhere: the home replica is the loaded one.
            before = len(await envoy.settled())
            for i in range(4):
                await ask(f"Unrelated question {i} about the weather in town {i * 7}.")
            elsewhere = await envoy_endpoints(envoy, before, 4)
            assert home not in elsewhere, (home, elsewhere)
            # A request with the prefix still goes home (affinity wins within the bound).
            await ask(f"{PREFIX} Question 9: and the invoice?")
            assert await envoy_endpoints(envoy, before + 4, 1) == [home]
    finally:
        await client.close()
    await nothing_in_flight(picker)


# -- 3. InferenceModel rewrite and LoRA adapters ------------------------------------------------


async def test_model_rewrite_and_lora_adapters(stack: Stack) -> None:
    client = stack.client()
    try:
        # The model server echoes the `model` it received: the InferenceModel's target.
        done = await client.chat.completions.create(
            model="food-review", messages=[{"role": "user", "content": "hi"}], max_tokens=3)
        assert done.model == "/model/llama2" and done.usage is not None
        lora = await client.chat.completions.create(
            model="sql-reviews", messages=[{"role": "user", "content": "select"}], max_tokens=3)
        assert lora.model == "sql-lora"
        stream = await client.chat.completions.create(
            model="sql-reviews", messages=[{"role": "user", "content": "select"}], max_tokens=6,
            stream=True)
        assert {c.model async for c in stream} == {"sql-lora"}
        # An adapter asked for by its own name goes through as it is.
        direct = await client.chat.completions.create(
            model="tweet-summary-1", messages=[{"role": "user", "content": "tl;dr"}],
            max_tokens=3)
        assert direct.model == "tweet-summary-1"
    finally:
        await client.close()
    await nothing_in_flight(stack.picker)
    records = stack.picker.logged()[-4:]
    assert [(r["model"], r.get("target_model"), r["status"]) for r in records] == [
        ("food-review", "/model/llama2", 200), ("sql-reviews", "sql-lora", 200),
        ("sql-reviews", "sql-lora", 200), ("tweet-summary-1", None, 200)]


# -- 4. shedding --------------------------------------------------------------------------------


async def test_sheddable_request_on_a_saturated_pool_is_429(stack: Stack,
                                                            own_procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    # --saturation-queue 0: no endpoint ever has fewer than 0 requests waiting, so the pool is
    # always saturated and a Sheddable request is shed.
    picker = start_picker(own_procs, stack.manifests, "--saturation-queue", "0")
    envoy = start_envoy(own_procs, tmp_path, stack.manifests, picker)
    status, headers, body = await post(envoy.url, chat("hi", model="batch-reviews"))
    assert status == 429
    assert headers["content-type"] == "application/json"
    assert orjson.loads(body) == SHED_BODY
    # A Critical one is served all the same.
    status, _, body = await post(envoy.url, chat("hi", model="food-review"))
    assert status == 200 and orjson.loads(body)["model"] == "/model/llama2"
    records = await envoy.records(2)
    assert [(r["status"], r["flag"]) for r in records] == [(429, "-"), (200, "-")]
    # The picker's ImmediateResponse (its details), never sent upstream.
    assert (records[0]["details"], records[0]["endpoint"]) == ("poolgate_epp_429", None)
    async with aiohttp.ClientSession() as s, s.get(f"{picker.admin}/metrics") as r:
        metrics = await r.text()
    assert 'poolgate_requests_shed_total{pool="default/main",reason="saturated"} 1.0' in metrics
    await nothing_in_flight(picker)


# -- 5. no ready endpoint -----------------------------------------------------------------------


async def test_no_ready_endpoint_is_503(stack: Stack) -> None:
    before = len(await stack.envoy.settled())
    # A pool that selects no endpoint: the picker refuses with the gateway's 503.
    status, headers, body = await post(stack.envoy.url, chat("hi"), host="empty.example")
    assert (status, body) == (503, b"no healthy upstream")
    assert headers["content-type"] == "text/plain"
    # A pool whose only endpoint does not exist: picked (nothing is known against it), and
    # Envoy's connection to it is refused.
    status, _, body = await post(stack.envoy.url, chat("hi"), host="gone.example")
    assert (status, body) == (503, CONNECT_FAILURE)
    records = (await stack.envoy.records(before + 2))[before:]
    assert [(r["host"], r["endpoint"], r["flag"]) for r in records] == [
        ("empty.example", None, "-"), ("gone.example", DEAD, "UF")]
    assert records[0]["details"] == "poolgate_epp_503"  # the picker's ImmediateResponse
    await nothing_in_flight(stack.picker)
    picker = stack.picker.logged()[-2:]
    assert [(r["route"], r["status"]) for r in picker] == [("default/empty", 503),
                                                           ("default/gone", 503)]


# -- 6. the picker stopped: failureMode ---------------------------------------------------------


# Envoy's refusal of a FailClose request when it knows the picker is down, and the start of its
# refusal when it tried the picker and could not connect.
NO_PICKER = "ext_proc_error_gRPC_error_14{no_healthy_upstream{no_healthy_upstream}}"
PICKER_REFUSED = "ext_proc_error_gRPC_error_14{upstream_connect_error_or_disconnect/reset_before"


async def closed_until(envoy: Envoy, status: int, details: str | None = None,
                       timeout: float = 10.0) -> list[Record]:
    """FailClose requests, one at a time, until one is answered `status` (with `details`):
    Envoy's records of them all.

    Envoy's admin shows the picker's health as its health checker sees it, and its worker
    acts on it a moment later; after the picker was killed, the worker went on opening ext_proc
    streams to it for up to one more health-check interval (measured: about 1 s, from the
    second kill of a run on). A FailClose request shows which view the worker has."""
    deadline = time.monotonic() + timeout
    seen: list[Record] = []
    while True:
        before = len(await envoy.settled())
        await post(envoy.url, chat("probe"), host="closed.example")
        record = (await envoy.records(before + 1))[before]
        seen.append(record)
        if record["status"] == status and details in (None, record["details"]):
            return seen
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.02)


async def test_picker_stopped_fail_open_routes_fail_close_refuses(stack: Stack,
                                                                  own_procs: ProcessGroup,
                                                                  tmp_path: Path) -> None:
    picker = start_picker(own_procs, stack.manifests)
    envoy = start_envoy(own_procs, tmp_path, stack.manifests, picker)
    for host in ("open.example", "closed.example"):
        status, _, _ = await post(envoy.url, chat("hi"), host=host)
        assert status == 200
    assert len(await picker.records(2)) == 2

    picker.proc.kill()  # SIGKILL by PID, as a crash
    envoy.wait_picker_health(healthy=False)  # Envoy's gRPC health check found it gone
    # Until Envoy's worker knows, a request's ext_proc stream is opened to the dead picker and
    # fails on connecting, after Envoy has streamed the request body into it
    # (FULL_DUPLEX_STREAMED): FailClose answers 500, and so does FailOpen, as Envoy 1.40 can
    # let a request through only when its stream fails as it opens. Hence the wait.
    probes = await closed_until(envoy, 500, NO_PICKER)
    assert all(r["status"] == 500 and r["details"].startswith(PICKER_REFUSED)
               for r in probes[:-1]), probes
    before = len(await envoy.settled())
    for _ in range(3):
        status, _, body = await post(envoy.url, chat("hi"), host="open.example")
        assert status == 200 and orjson.loads(body)["model"] == "/model/llama2"
        status, _, body = await post(envoy.url, chat("hi"), host="closed.example")
        assert (status, body) == (500, b"")
    after = (await envoy.records(before + 6))[before:]
    # FailOpen: sent on without a pick, to a replica of the pool (the cluster's least-request
    # fallback); FailClose: Envoy's 500, nothing sent upstream.
    assert {r["endpoint"] for r in after if r["host"] == "open.example"} \
        <= set(stack.fleet.addresses)
    closed = [r for r in after if r["host"] == "closed.example"]
    assert [(r["status"], r["endpoint"], r["details"]) for r in closed] == \
        [(500, None, NO_PICKER)] * 3

    # A picker back on the same port: Envoy's health check finds it, FailClose routes again.
    again = start_picker(own_procs, stack.manifests, grpc_port=picker.grpc_port)
    envoy.wait_picker_health(healthy=True)
    probes = await closed_until(envoy, 200)
    assert all((r["status"], r["details"]) == (500, NO_PICKER) for r in probes[:-1]), probes
    assert len(await again.records(1)) == 1


# -- 7. subset hints ----------------------------------------------------------------------------

SUBSET_HEADER = "x-test-subset-hint"


def subset_from_header(config: Record) -> None:
    """Add Envoy's header-to-metadata filter ahead of ext_proc: a request's `x-test-subset-hint`
    becomes its `envoy.lb.subset_hint` / `x-gateway-destination-endpoint-subset` (then removed).

    Why the test edits the rendered bootstrap: in the Inference Extension the subset hint is
    set by the gateway in front of the picker (a mesh narrowing the pool to some endpoints, say),
    and nothing in the manifests declares one, so `poolgate envoy-config` renders no source for
    it; it only forwards the namespace to the picker, which is what this test checks. A header
    (rather than a fixed `set_metadata` filter) lets each request name its own subset."""
    filters = http_filters(config)
    at = next(i for i, f in enumerate(filters) if f["name"] == "envoy.filters.http.ext_proc")
    filters.insert(at, {"name": "envoy.filters.http.header_to_metadata", "typed_config": {
        "@type": "type.googleapis.com/envoy.extensions.filters.http.header_to_metadata.v3.Config",
        "request_rules": [{"header": SUBSET_HEADER, "remove": True, "on_header_present": {
            "metadata_namespace": "envoy.lb.subset_hint",
            "key": "x-gateway-destination-endpoint-subset", "type": "STRING"}}],
    }})


async def test_subset_hint_keeps_the_pick_inside_it(stack: Stack, own_procs: ProcessGroup,
                                                    tmp_path: Path) -> None:
    envoy = start_envoy(own_procs, tmp_path, stack.manifests, stack.picker,
                        edit=subset_from_header, name="envoy-subset")
    replicas = stack.fleet.addresses

    async def served(subset: str, count: int, host: str | None = None) -> list[str]:
        before = len(await envoy.settled())
        for i in range(count):
            status, _, body = await post(envoy.url, chat(f"subset {i}"), host=host,
                                         headers={SUBSET_HEADER: subset})
            assert status == 200, body
        return await envoy_endpoints(envoy, before, count)

    assert set(await served(replicas[2], 4)) == {replicas[2]}
    assert set(await served(f"{replicas[0]}, {replicas[1]}", 6)) <= {replicas[0], replicas[1]}
    # Nothing of the pool in the subset, or an empty subset: the picker's 503.
    for subset in ("10.9.9.9:8000", ","):
        status, _, body = await post(envoy.url, chat("hi"), headers={SUBSET_HEADER: subset})
        assert (status, body) == (503, b"no healthy upstream"), subset
    # The subset holds for the fallbacks too: with the dead endpoint and one live one allowed,
    # every request is served by that one. Envoy walks the picker's list (the pick, then the
    # fallbacks) in order; its least-request fallback would also send some to the pool's other
    # live endpoint.
    flaky = await served(f"{DEAD},{replicas[2]}", 6, host="flaky.example")
    assert flaky == [replicas[2]] * 6
    await nothing_in_flight(stack.picker)
    records = [r for r in stack.picker.logged() if r["route"] == "default/flaky"][-6:]
    assert [(r["endpoint"], r["status"]) for r in records] == [(replicas[2], 200)] * 6
    assert any(r["attempts"] == 2 for r in records)  # picked the dead one, served by the other


# -- 8. the fallback list on a connect failure --------------------------------------------------


async def test_connect_failure_goes_down_the_fallback_list(stack: Stack) -> None:
    envoy, picker = stack.envoy, stack.picker
    live = stack.fleet.addresses[1:]
    before = len(await envoy.settled())
    for i in range(4):
        status, _, body = await post(envoy.url, chat(f"retry {i}"), host="flaky.example")
        assert status == 200, body
    # Envoy: every request served by a live endpoint of the pool (the dead one refused the
    # connection and the retry took the next endpoint of the picker's list).
    assert set(await envoy_endpoints(envoy, before, 4)) <= set(live)
    await nothing_in_flight(picker)
    records = [r for r in picker.logged() if r["route"] == "default/flaky"][-4:]
    assert all(r["status"] == 200 and r["endpoint"] in live for r in records), records
    # The picker learnt which endpoint served: two attempts where it had picked the dead one.
    assert any(r["attempts"] == 2 for r in records), records

    # While a response streams from the fallback, the request counts on the fallback, not on
    # the dead endpoint the picker had picked first (the served-endpoint feedback).
    async with aiohttp.ClientSession() as s:
        responses = []
        try:
            for n in range(1, 4):
                response = await s.post(f"{envoy.url}/v1/chat/completions", headers={
                    "host": "flaky.example"}, json=chat(f"long {n}", 1000, stream=True))
                responses.append(response)
                assert response.status == 200
                await response.content.readline()  # the first event
                endpoints = await picker.wait_endpoints(FLAKY, total_in_flight(n),
                                                        f"{n} streams")
                assert endpoints[DEAD]["in_flight"] == 0, endpoints
        finally:
            for response in responses:
                response.close()
    await nothing_in_flight(picker)
    records = [r for r in picker.logged() if r["route"] == "default/flaky"][-3:]
    assert any(r["attempts"] == 2 for r in records), records


# -- 9. in-flight counts stay exact -------------------------------------------------------------


async def test_in_flight_counts_return_to_zero(stack: Stack) -> None:
    """Many requests at once, of every kind the picker follows to their end: non-streamed,
    streamed to the end, streams the client abandons after their first event, requests whose
    client leaves at once, refusals, fallbacks; afterwards the picker's `/status` has nothing
    in flight anywhere."""
    url = stack.envoy.url

    async def abandon(s: aiohttp.ClientSession, body: dict[str, Any]) -> None:
        """A stream the client leaves after its first event."""
        async with s.post(f"{url}/v1/chat/completions", json=body) as r:
            await r.content.readline()
            r.close()

    async def drop(body: dict[str, Any]) -> None:
        """A request whose client goes away as soon as it is sent."""
        payload = orjson.dumps(body)
        _, writer = await asyncio.open_connection("127.0.0.1", stack.envoy.port)
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n"
                     b"content-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(payload), payload))
        await writer.drain()
        writer.close()
        await writer.wait_closed()

    async with aiohttp.ClientSession() as s:
        jobs = []
        for i in range(4):
            jobs += [
                post(url, chat(f"plain {i}", 8)),
                post(url, chat(f"stream {i}", 8, stream=True)),
                post(url, chat(f"retried {i}", 4), host="flaky.example"),
                post(url, chat(f"empty {i}"), host="empty.example"),
                abandon(s, chat(f"abandoned {i}", 1000, stream=True)),
                drop(chat(f"dropped {i}", 1000, stream=True)),
            ]
        results = await asyncio.gather(*jobs)
    statuses = sorted(r[0] for r in results if r is not None)
    assert statuses == [200] * 12 + [503] * 4
    await nothing_in_flight(stack.picker)

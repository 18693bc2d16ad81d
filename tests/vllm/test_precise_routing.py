"""Precise prefix routing against real vLLM 0.32 servers (make test-vllm).

Two real vLLM CPU servers of the tiny local model publish their KV-cache events over ZMQ;
`poolgate serve` runs the precise prefix scorer on them, tokenising with the model's own
tokenizer directory. A prefix is cached on one replica by a request sent straight to it (not
through the gateway, so only the events can tell), then the openai SDK sends requests that
share it through the gateway. Which replica served a request is read twice: from the gateway's
access log and from the replicas' own `vllm:request_success_total` and
`vllm:prefix_cache_hits_total`. Finally a replica is restarted (a new process: empty cache, its
event sequence back at 0), and the gateway must forget what it held.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import openai
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from poolgate.scheduling.tokenizer import RequestTokenizer, load_tokenizer
from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1ALPHA2_YAML,
    RunningGateway,
    start_gateway,
    write_endpoints,
)
from tests.support.processes import process_group
from tests.vllm._server import BLOCK_SIZE, TOPIC, VLLMServer, VLLMSetup, post_json
from tests.vllm.conftest import VLLMFleet

pytestmark = pytest.mark.vllm

ROUTE = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]
---
""" + POOL_V1ALPHA2_YAML
PROFILE = "precise-vllm"
WAIT = 30.0  # seconds to wait for an event to reach the gateway's index (it takes milliseconds)


def _profile(setup: VLLMSetup, servers: list[VLLMServer]) -> dict[str, Any]:
    address = {s.url.removeprefix("http://"): s for s in servers}
    return {
        "profile": PROFILE,
        "plugins": [
            {"type": "precise-prefix-cache-scorer", "weight": 4, "params": {
                "tokenizer": str(setup.model),
                "tokenProcessorConfig": {"blockSize": BLOCK_SIZE},
                "kvEventsConfig": {
                    "topicFilter": TOPIC,
                    "endpoints": {a: s.events_endpoint for a, s in address.items()},
                    "replayEndpoints": {a: s.replay_endpoint for a, s in address.items()},
                }}},
            {"type": "queue-scorer"},
            {"type": "in-flight-scorer"},
            {"type": "max-score-picker"},
        ],
    }


@dataclass
class Stack:
    fleet: VLLMFleet
    gateway: RunningGateway
    client: openai.OpenAI
    tokenizer: RequestTokenizer

    def address(self, server: VLLMServer) -> str:
        return server.url.removeprefix("http://")

    def gateway_metric(self, name: str, endpoint: str) -> float:
        return _metric(f"{self.gateway.admin}/metrics", name, {"endpoint": endpoint})

    def wait_gateway(self, what: str, ok: Callable[[], bool]) -> None:
        deadline = time.monotonic() + WAIT
        while not ok():
            if time.monotonic() > deadline:
                with urllib.request.urlopen(f"{self.gateway.admin}/metrics", timeout=10) as r:
                    kv = [line for line in r.read().decode().splitlines()
                          if line.startswith("poolgate_kv_events")]
                log = [line for line in self.gateway.proc.output().splitlines()
                       if not line.startswith("{")]
                raise AssertionError(f"the gateway never saw {what}\n" + "\n".join(kv)
                                     + "\n--- gateway log ---\n" + "\n".join(log[-40:]))
            time.sleep(0.05)


def _metric(url: str, name: str, labels: dict[str, str] | None = None) -> float:
    """The sum of the samples of `name` (with these labels) at a Prometheus endpoint."""
    with urllib.request.urlopen(url, timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in (labels or {}).items()):
                total += sample.value
    return total


@pytest.fixture(scope="module")
def stack(vllm_fleet: VLLMFleet, vllm_setup: VLLMSetup,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("gateway")
    config = tmp / "config"
    config.mkdir()
    (config / "route.yaml").write_text(ROUTE)
    write_endpoints(config, {"app": "sim"}, [s.url.removeprefix("http://")
                                             for s in vllm_fleet.servers])
    profiles = tmp / "profiles.yaml"
    profiles.write_text(yaml.safe_dump(_profile(vllm_setup, vllm_fleet.servers),
                                       sort_keys=False))
    with process_group(tmp) as procs:
        gateway = start_gateway(procs, config, "--scheduler-config", str(profiles),
                                "--scheduler-profile", PROFILE)
        client = openai.OpenAI(base_url=f"{gateway.url}/v1", api_key="unused", max_retries=0)
        try:
            yield Stack(vllm_fleet, gateway, client, load_tokenizer(str(vllm_setup.model)))
        finally:
            client.close()


def _prefix(tag: str) -> str:
    """A prompt prefix of about six blocks that no other test shares."""
    words = " ".join(f"{tag}{i}" for i in range(24))
    return (f"Context {tag}: {words}. The replica that computed this context keeps its blocks "
            "and the gateway learns it from the events it publishes. ") * 2


def _access_log(stack: Stack) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in stack.gateway.proc.output().splitlines()
            if line.startswith("{")]


def _served_by(stack: Stack, send: Callable[[], None]) -> tuple[VLLMServer, float]:
    """Run `send` (one request through the gateway); the replica that served it, by its own
    counters and by the gateway's access log (which must agree), and the prompt tokens that
    replica found in its prefix cache."""
    servers = stack.fleet.servers
    done = [_metric(f"{s.url}/metrics", "vllm:request_success_total") for s in servers]
    hits = [_metric(f"{s.url}/metrics", "vllm:prefix_cache_hits_total") for s in servers]
    logged = len(_access_log(stack))
    send()
    served = [i for i, s in enumerate(servers)
              if _metric(f"{s.url}/metrics", "vllm:request_success_total") > done[i]]
    assert len(served) == 1, f"replicas {served} finished a request"
    server = servers[served[0]]
    # The gateway writes the record just after the last byte went out.
    stack.wait_gateway("the access-log record", lambda: len(_access_log(stack)) > logged)
    assert _access_log(stack)[-1]["endpoint"] == stack.address(server)
    hit = _metric(f"{server.url}/metrics", "vllm:prefix_cache_hits_total") - hits[served[0]]
    return server, hit


def _cache_on(stack: Stack, server: VLLMServer, send_direct: Callable[[], None]) -> None:
    """Send a request straight to `server` and wait until the gateway has read its events."""
    endpoint = stack.address(server)
    before = stack.gateway_metric("poolgate_kv_events_events_total", endpoint)
    send_direct()
    stack.wait_gateway(f"{endpoint}'s events", lambda: stack.gateway_metric(
        "poolgate_kv_events_events_total", endpoint) > before)


def _complete_on(server: VLLMServer, prompt: str) -> Callable[[], None]:
    return lambda: post_json(f"{server.url}/v1/completions", {
        "model": "tiny", "prompt": prompt, "max_tokens": 2, "temperature": 0})


def test_a_prefix_cached_directly_on_a_replica_is_routed_there(stack: Stack) -> None:
    a, b = stack.fleet.servers
    # Alternate the replica, so a gateway that always picked one of them could not pass.
    for round_, holder in enumerate([b, a, b, a]):
        prefix = _prefix(f"direct{round_}x")
        _cache_on(stack, holder, _complete_on(holder, prefix + "Question zero?"))

        def send(prefix: str = prefix) -> None:
            stack.client.completions.create(model="tiny", prompt=prefix + "Question one?",
                                            max_tokens=2, temperature=0)

        served, hit_tokens = _served_by(stack, send)
        assert served is holder, f"round {round_}: sent to {served.url}, cached on {holder.url}"
        assert hit_tokens >= 4 * BLOCK_SIZE  # the replica itself found the prefix cached


def test_a_chat_whose_system_prompt_is_cached_is_routed_there(stack: Stack) -> None:
    a, b = stack.fleet.servers
    for round_, holder in enumerate([a, b]):
        system = _prefix(f"chat{round_}y")
        _cache_on(stack, holder, lambda holder=holder, system=system: post_json(
            f"{holder.url}/v1/chat/completions", {"model": "tiny", "max_tokens": 2, "messages": [
                {"role": "system", "content": system}, {"role": "user", "content": "First?"}]}))

        def send(system: str = system) -> None:
            stack.client.chat.completions.create(model="tiny", max_tokens=2, messages=[
                {"role": "system", "content": system}, {"role": "user", "content": "Second?"}])

        served, hit_tokens = _served_by(stack, send)
        assert served is holder, f"round {round_}: sent to {served.url}, cached on {holder.url}"
        assert hit_tokens >= 4 * BLOCK_SIZE


def test_a_restarted_replica_is_forgotten(stack: Stack) -> None:
    a, b = stack.fleet.servers
    prefixes = [_prefix(f"restart{i}z") for i in range(3)]
    for prefix in prefixes:
        _cache_on(stack, b, _complete_on(b, prefix + "Before?"))
    endpoint = stack.address(b)

    def starts_over() -> float:
        # The gateway sees the old process's connection drop (its SUB socket's monitor) or,
        # failing that, the new process's sequence starting again below what it applied.
        return (stack.gateway_metric("poolgate_kv_events_disconnects_total", endpoint)
                + stack.gateway_metric("poolgate_kv_events_publisher_restarts_total", endpoint))

    before = starts_over()
    held = stack.gateway_metric("poolgate_kv_events_blocks", endpoint)
    assert held >= 3 * 4
    b.restart()  # same ports, a new process: empty cache, event sequence from 0
    fresh = _prefix("afterrestart") + "Hello?"
    _complete_on(b, fresh)()
    stack.wait_gateway("the publisher restart", lambda: starts_over() > before)
    # What the index holds for B now is at most that one request's blocks (its prompt's full
    # blocks and the one its two generated tokens may complete).
    ids = stack.tokenizer.token_ids({"prompt": fresh})
    assert ids is not None
    stack.wait_gateway("B's new blocks", lambda: stack.gateway_metric(
        "poolgate_kv_events_blocks", endpoint) > 0)
    assert stack.gateway_metric("poolgate_kv_events_blocks", endpoint) <= (
        (len(ids) + 2) // BLOCK_SIZE)
    # B's old blocks are gone from the index; the same prefixes cached on A now go to A. Had
    # the gateway kept B's entries, both would claim them and each pick would be a coin toss.
    for prefix in prefixes:
        _cache_on(stack, a, _complete_on(a, prefix + "Again?"))

    for prefix in prefixes:
        def send(prefix: str = prefix) -> None:
            stack.client.completions.create(model="tiny", prompt=prefix + "After?",
                                            max_tokens=2, temperature=0)

        served, hit_tokens = _served_by(stack, send)
        assert served is a, f"sent to the restarted replica {served.url}"
        assert hit_tokens >= 4 * BLOCK_SIZE

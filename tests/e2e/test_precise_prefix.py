"""Precise prefix routing end to end: a simulated fleet publishing vLLM's KV events, `poolgate
serve` with `precise-prefix-cache-scorer` subscribed to them, and the real openai client.

What only precise routing can know: a replica's cache filled by requests that never came
through the gateway (sent straight to the replica, or before the gateway started)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import openai
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from poolgate.scheduling.tokenizer import load_tokenizer
from tests.e2e.gateway_fleet import (
    GATEWAY_YAML,
    POOL_V1_YAML,
    Fleet,
    RunningGateway,
    start_fleet,
    start_gateway,
    write_endpoints,
)
from tests.support.processes import ProcessGroup, free_port_range, poolgate_command, wait_http

pytestmark = pytest.mark.e2e

MODEL = "/model/llama2"
REPLICAS = 3
ROUTE = GATEWAY_YAML + """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
---
""" + POOL_V1_YAML


def _prefix(tag: str) -> str:
    """A long shared prefix (about 600 tokens of the simulator's tokenizer)."""
    return " ".join(f"{tag}-{i}" for i in range(300))


@dataclass
class Events:
    """Where the fleet's replica i publishes (pub + i) and answers replays (replay + i)."""

    pub: int
    replay: int

    def config(self) -> str:
        return json.dumps({"enable_kv_cache_events": True, "publisher": "zmq",
                           "endpoint": f"tcp://*:{self.pub}",
                           "replay_endpoint": f"tcp://*:{self.replay}", "topic": "kv",
                           "buffer_steps": 1000})


def _events() -> Events:
    return Events(free_port_range(REPLICAS), free_port_range(REPLICAS))


def _fleet(procs: ProcessGroup, events: Events, base: int | None = None) -> Fleet:
    """A fleet of REPLICAS simulators publishing KV events (on `base` when given: a restart)."""
    base = free_port_range(REPLICAS) if base is None else base
    proc = procs.start(poolgate_command(
        "sim", "--replicas", str(REPLICAS), "--port", str(base), "--model", MODEL,
        "--profile", "fast", "--time-scale", "0.05", "--seed", "7",
        "--kv-events-config", events.config()))
    for i in range(REPLICAS):
        wait_http(f"http://127.0.0.1:{base + i}/health", proc=proc)
    return Fleet(proc, base, REPLICAS)


def _config(tmp_path: Path, fleet: Fleet, events: Events, replay: bool = True,
            hold: float = 1.0) -> tuple[Path, Path]:
    config = tmp_path / "config"
    config.mkdir(exist_ok=True)
    (config / "pool.yaml").write_text(ROUTE)
    write_endpoints(config, {"app": "sim"}, fleet.addresses)
    kv: dict[str, Any] = {
        "topicFilter": "kv", "holdSeconds": hold,
        "endpoints": {a: f"tcp://127.0.0.1:{events.pub + i}"
                      for i, a in enumerate(fleet.addresses)}}
    if replay:
        kv["replayEndpoints"] = {a: f"tcp://127.0.0.1:{events.replay + i}"
                                 for i, a in enumerate(fleet.addresses)}
    profile = {"profile": "precise", "plugins": [
        {"type": "precise-prefix-cache-scorer", "weight": 4,
         "params": {"tokenizer": "simulator", "kvEventsConfig": kv,
                    "loadBoundAbs": 12, "loadSignal": "in-flight"}},
        {"type": "in-flight-scorer", "weight": 1},
        {"type": "max-score-picker"}]}
    scheduler = tmp_path / "scheduler.yaml"
    scheduler.write_text(yaml.safe_dump(profile))
    return config, scheduler


def _gateway(procs: ProcessGroup, config: Path, scheduler: Path) -> RunningGateway:
    return start_gateway(procs, config, "--scheduler-config", str(scheduler),
                         "--scheduler-profile", "precise")


async def _direct(url: str, prompt: str) -> None:
    """A request straight to one replica, around the gateway."""
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0) as client:
        await client.completions.create(model=MODEL, prompt=prompt, max_tokens=2)


async def _through(gw: RunningGateway, prompts: list[str]) -> list[str]:
    """Send `prompts` one after the other through the gateway; the endpoints they went to."""
    def completion(record: dict[str, Any]) -> bool:
        return record.get("path") == "/v1/completions"

    before = len(await gw.access_log(0, completion))
    async with openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key="x", max_retries=0) as client:
        for prompt in prompts:
            await client.completions.create(model=MODEL, prompt=prompt, max_tokens=2)
    records = await gw.access_log(before + len(prompts), completion)
    return [r["endpoint"] for r in records[before:]]


async def _metrics(gw: RunningGateway) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    async with aiohttp.ClientSession() as s, s.get(f"{gw.admin}/metrics") as r:
        text = await r.text()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


async def _metric(gw: RunningGateway, name: str, **labels: str) -> float:
    return (await _metrics(gw)).get((name, tuple(sorted(labels.items()))), 0.0)


async def _until(gw: RunningGateway, name: str, at_least: float, **labels: str) -> None:
    """Wait (up to 20 s) until the gateway's series reaches `at_least`."""
    deadline = time.monotonic() + 20
    while (value := await _metric(gw, name, **labels)) < at_least:
        assert time.monotonic() < deadline, f"{name}{labels} stayed at {value}"
        await asyncio.sleep(0.05)


async def _nudge(gw: RunningGateway, url: str, name: str, **labels: str) -> None:
    """Send new prompts straight to the replica at `url` (each stores new blocks: one more
    event batch) until the gateway's series `name` is at least 1."""
    for i in range(40):
        await _direct(url, _prefix(f"nudge{i}")[:400])
        try:
            await asyncio.wait_for(_until(gw, name, 1, **labels), 0.5)
            return
        except TimeoutError:
            continue
    raise AssertionError(f"{name}{labels} stayed below 1 after 40 batches")


async def test_requests_follow_blocks_cached_around_the_gateway(procs: ProcessGroup,
                                                                tmp_path: Path) -> None:
    events = _events()
    fleet = _fleet(procs, events)
    gw = _gateway(procs, *_config(tmp_path, fleet, events))
    target = fleet.addresses[2]
    # Replica 2 caches the prefix for a client that talks to it directly.
    await _direct(fleet.urls[2], _prefix("alpha") + " direct question")
    await _until(gw, "poolgate_kv_events_blocks", 30, endpoint=target)
    assert await _metric(gw, "poolgate_kv_events_endpoints", state="consistent") >= 1
    sent = await _through(gw, [_prefix("alpha") + f" question {i}" for i in range(4)])
    assert sent == [target] * 4
    # Another prefix cached directly on replica 0 goes there.
    await _direct(fleet.urls[0], _prefix("beta") + " direct question")
    await _until(gw, "poolgate_kv_events_blocks", 30, endpoint=fleet.addresses[0])
    assert await _through(gw, [_prefix("beta") + " asked through the gateway"]) == [
        fleet.addresses[0]]
    assert await _metric(gw, "poolgate_kv_events_gaps_total", endpoint=target) == 0


async def test_a_gateway_started_late_replays_the_history(procs: ProcessGroup,
                                                          tmp_path: Path) -> None:
    events = _events()
    fleet = _fleet(procs, events)
    # Replica 1 caches the prefix before any gateway runs: those events went to nobody.
    await _direct(fleet.urls[1], _prefix("gamma") + " before the gateway")
    gw = _gateway(procs, *_config(tmp_path, fleet, events))
    target = fleet.addresses[1]
    # Its next batch shows the gateway joined late: it asks the replay socket from 0. (The first
    # batches may also pass before the subscription reaches the replica: send until one lands.)
    await _nudge(gw, fleet.urls[1], "poolgate_kv_events_replays_total", endpoint=target,
                 result="ok")
    assert await _metric(gw, "poolgate_kv_events_blocks_dropped_total", endpoint=target,
                         reason="unknown_parent") == 0
    assert await _through(gw, [_prefix("gamma") + " after"]) == [target]


async def test_without_replay_a_late_join_degrades_until_the_hold_ends(
        procs: ProcessGroup, tmp_path: Path) -> None:
    events = _events()
    fleet = _fleet(procs, events)
    await _direct(fleet.urls[1], _prefix("delta") + " before the gateway")
    gw = _gateway(procs, *_config(tmp_path, fleet, events, replay=False, hold=2.0))
    await _nudge(gw, fleet.urls[1], "poolgate_kv_events_endpoints", state="degraded")
    # Degraded: routed by the approximate index meanwhile, never failed; consistent again
    # once the stream has been in order for the hold.
    assert len(await _through(gw, [_prefix("delta") + " meanwhile"])) == 1
    await _until(gw, "poolgate_kv_events_endpoints", 1, state="consistent")


async def test_a_restarted_fleet_is_forgotten_and_followed_again(procs: ProcessGroup,
                                                                tmp_path: Path) -> None:
    events = _events()
    fleet = _fleet(procs, events)
    gw = _gateway(procs, *_config(tmp_path, fleet, events))
    first_life = fleet.addresses[2]
    await _direct(fleet.urls[2], _prefix("eps") + " first life")
    await _until(gw, "poolgate_kv_events_blocks", 30, endpoint=first_life)
    # The fleet restarts (new processes, empty caches, sequences from 0 again).
    fleet.proc.stop()
    await _until(gw, "poolgate_kv_events_disconnects_total", 1, endpoint=first_life)
    assert await _metric(gw, "poolgate_kv_events_blocks", endpoint=first_life) == 0
    fleet = _fleet(procs, events, base=fleet.base_port)
    await _nudge(gw, fleet.urls[0], "poolgate_kv_events_endpoints", state="consistent")
    await _direct(fleet.urls[0], _prefix("zeta") + " second life")
    await _until(gw, "poolgate_kv_events_blocks", 30, endpoint=fleet.addresses[0])
    assert await _through(gw, [_prefix("zeta") + " through"]) == [fleet.addresses[0]]
    # The first life's blocks are not believed any more.
    assert await _metric(gw, "poolgate_kv_events_blocks", endpoint=first_life) == 0


async def test_the_scorers_tokens_are_the_simulators(procs: ProcessGroup) -> None:
    fleet = start_fleet(procs, 1, model=MODEL)
    tokenizer = load_tokenizer("simulator")
    bodies: list[dict[str, Any]] = [
        {"model": MODEL, "prompt": _prefix("parity")},
        {"model": MODEL, "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": [{"type": "text", "text": "part one"},
                                         {"type": "text", "text": " part two"}]}]},
    ]
    async with aiohttp.ClientSession() as s:
        for body in bodies:
            async with s.post(f"{fleet.urls[0]}/tokenize", json=body) as r:
                assert r.status == 200
                served = (await r.json())["tokens"]
            assert tokenizer.token_ids(body) == served

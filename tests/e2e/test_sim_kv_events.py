"""`poolgate sim --kv-events-config`: vLLM's KV-cache events from a real process over ZMQ."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time

import aiohttp
import pytest
import zmq

from poolgate.core.kv_events import (
    END_SEQ,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    KVEvent,
    decode_batch,
)
from poolgate.sim.kv_cache import chain_block_hashes
from tests.e2e._sim_fleet import start_sim
from tests.support.processes import ProcessGroup, free_port_range, poolgate_command

pytestmark = pytest.mark.e2e

MODEL_KEY = ("/tmp/realvllm/tiny-llama", None)  # the sim's hash extra key: model path, adapter


def _prompt(tag: str, words: int = 200) -> str:
    return " ".join(f"{tag}{i}" for i in range(words))


async def _tokens(session: aiohttp.ClientSession, url: str, prompt: str) -> list[int]:
    async with session.post(f"{url}/tokenize", json={"model": "tiny-llama", "prompt": prompt}) as r:
        assert r.status == 200
        return list((await r.json())["tokens"])


async def _complete(session: aiohttp.ClientSession, url: str, prompt: str) -> None:
    body = {"model": "tiny-llama", "prompt": prompt, "max_tokens": 2}
    async with session.post(f"{url}/v1/completions", json=body) as r:
        assert r.status == 200, await r.text()


def _drain(sub: zmq.Socket[bytes], until: float) -> list[tuple[int, list[KVEvent]]]:
    out: list[tuple[int, list[KVEvent]]] = []
    while sub.poll(max(0, int((until - time.monotonic()) * 1000))):
        topic, seq, payload = sub.recv_multipart()
        assert topic == b"kv-events"
        out.append((int.from_bytes(seq, "big"), decode_batch(payload).events))
        until = min(until, time.monotonic() + 0.5)  # stop shortly after the stream goes quiet
    return out


async def test_events_from_a_replica(procs: ProcessGroup) -> None:
    pub_base, replay_base = free_port_range(2), free_port_range(2)
    config = {"enable_kv_cache_events": True, "publisher": "zmq",
              "endpoint": f"tcp://*:{pub_base}", "replay_endpoint": f"tcp://*:{replay_base}",
              "topic": "kv-events", "buffer_steps": 1000}
    sim = start_sim(procs, "--kv-events-config", json.dumps(config), "--kv-cache-blocks", "64",
                    replicas=2)
    url = sim.urls[1]  # replica 1 publishes on both ports + 1
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    dealer = ctx.socket(zmq.DEALER)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"kv-events")
        sub.connect(f"tcp://127.0.0.1:{pub_base + 1}")
        await asyncio.sleep(0.5)  # PUB drops what it sends before the subscription reaches it
        async with aiohttp.ClientSession() as session:
            first = _prompt("alpha")
            ids = await _tokens(session, url, first)
            await _complete(session, url, first)
            batches = _drain(sub, time.monotonic() + 5)
            keys = chain_block_hashes(ids, 16, MODEL_KEY)
            stored = [e for _, evs in batches for e in evs if isinstance(e, BlockStored)]
            assert stored and stored[0].block_hashes[: len(keys)] == keys
            assert stored[0].parent_block_hash is None and stored[0].block_size == 16
            assert stored[0].token_ids[: len(keys) * 16] == ids[: len(keys) * 16]
            # Other prompts push the first one out of a 64-block cache.
            for tag in ("beta", "gamma", "delta"):
                await _complete(session, url, _prompt(tag))
            batches += _drain(sub, time.monotonic() + 5)
            async with session.post(f"{url}/reset_prefix_cache") as r:
                assert r.status == 200
            cleared = _drain(sub, time.monotonic() + 5)
            assert [evs for _, evs in cleared] == [[AllBlocksCleared()]]
            batches += cleared
        seqs = [s for s, _ in batches]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # no gaps
        removed = {h for _, evs in batches for e in evs if isinstance(e, BlockRemoved)
                   for h in e.block_hashes}
        assert set(keys) & removed
        # Replay from sequence 0 returns every batch, including any sent before we subscribed.
        dealer.connect(f"tcp://127.0.0.1:{replay_base + 1}")
        dealer.send_multipart([b"", (0).to_bytes(8, "big")])
        replayed: list[int] = []
        while True:
            assert dealer.poll(5000), "replay did not answer"
            # vLLM 0.32's reply: (b"", topic, seq, payload), then (b"", b"", -1, b"").
            _, topic, seq_bytes, payload = dealer.recv_multipart()
            if seq_bytes == END_SEQ:
                assert (topic, payload) == (b"", b"")
                break
            assert topic == b"kv-events"
            replayed.append(int.from_bytes(seq_bytes, "big"))
            decode_batch(payload)
        assert replayed == list(range(seqs[-1] + 1))
    finally:
        sub.close(linger=0)
        dealer.close(linger=0)
        ctx.term()


def test_overlapping_replica_ports_are_refused() -> None:
    config = {"enable_kv_cache_events": True, "publisher": "zmq",
              "endpoint": "tcp://*:5557", "replay_endpoint": "tcp://*:5558"}
    out = subprocess.run(poolgate_command("sim", "--replicas", "2", "--kv-events-config",
                                          json.dumps(config)),
                         capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode != 0
    assert "overlap" in out.stderr

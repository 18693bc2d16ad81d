"""The simulator's vLLM KV-cache events: what the engine records, the wire format, the sockets."""

from __future__ import annotations

import time

import pytest
import zmq

from poolgate.core.kv_events import (
    END_SEQ,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    decode_batch,
)
from poolgate.sim.kv_cache import chain_block_hashes
from poolgate.sim.kv_events import (
    KVEventsConfig,
    ZmqEventPublisher,
    offset_endpoint,
    parse_kv_events_config,
    replica_endpoints,
)
from tests.support.processes import free_port
from tests.unit.sim._engine_builders import Clock, make_engine, make_request


def _stored(events: list[object]) -> list[BlockStored]:
    return [e for e in events if isinstance(e, BlockStored)]


def test_prompt_blocks_are_stored_with_the_prefix_cache_keys() -> None:
    engine = make_engine(block_size=4)
    engine.enable_kv_events()
    prompt = list(range(100, 110))  # two full blocks and a partial one
    engine.add(make_request("a", prompt, max_tokens=1), 0.0)
    Clock(engine).run()
    events = engine.take_kv_events()
    stored = _stored(events)
    assert len(stored) == 1
    ev = stored[0]
    keys = chain_block_hashes(prompt, 4, ("/model/m", None))
    assert ev.block_hashes == keys
    assert ev.parent_block_hash is None
    assert ev.token_ids == prompt[:8]
    assert (ev.block_size, ev.lora_id, ev.medium, ev.lora_name) == (4, None, "GPU", None)
    # The published hashes are the keys the prefix cache answers hits for.
    assert [b.block_hash for b in engine.kv.cached_prefix(keys)] == keys
    assert all(0 <= h < 2**64 for h in keys)
    assert engine.take_kv_events() == []


def test_a_shared_prefix_is_stored_once_and_a_suffix_names_its_parent() -> None:
    engine = make_engine(block_size=4)
    engine.enable_kv_events()
    engine.add(make_request("a", list(range(100, 109)), max_tokens=1), 0.0)
    Clock(engine).run()
    engine.take_kv_events()
    second = [*range(100, 108), 7, 7, 7, 7, 1]
    engine.add(make_request("b", second, max_tokens=1, adapter=None), 0.0)
    Clock(engine).run()
    (ev,) = _stored(engine.take_kv_events())
    keys = chain_block_hashes(second, 4, ("/model/m", None))
    assert ev.block_hashes == keys[2:]
    assert ev.parent_block_hash == keys[1]
    assert ev.token_ids == [7, 7, 7, 7]


def test_adapters_carry_a_lora_id_and_name() -> None:
    engine = make_engine(block_size=4)
    engine.enable_kv_events()
    engine.add(make_request("a", 9, max_tokens=1, adapter="tiny-lora"), 0.0)
    Clock(engine).run()
    (ev,) = _stored(engine.take_kv_events())
    assert (ev.lora_id, ev.lora_name) == (1, "tiny-lora")


def test_eviction_under_a_small_cache_is_reported() -> None:
    engine = make_engine(blocks=3, block_size=4, seqs=1)
    engine.enable_kv_events()
    engine.add(make_request("a", list(range(100, 108)), max_tokens=1), 0.0)
    Clock(engine).run()
    first = _stored(engine.take_kv_events())[0].block_hashes
    engine.add(make_request("b", list(range(200, 208)), max_tokens=1), 0.0)
    Clock(engine).run()
    events = engine.take_kv_events()
    removed = [h for e in events if isinstance(e, BlockRemoved) for h in e.block_hashes]
    assert removed and set(removed) <= set(first)
    assert all(e.medium == "GPU" for e in events if isinstance(e, BlockRemoved))
    # Removal precedes the store that reused the blocks.
    kinds = [type(e) for e in events]
    assert kinds.index(BlockRemoved) < kinds.index(BlockStored)


def test_reset_clears_everything_when_idle() -> None:
    engine = make_engine(block_size=4)
    engine.enable_kv_events()
    engine.add(make_request("a", 9, max_tokens=1), 0.0)
    Clock(engine).run()
    engine.take_kv_events()
    assert engine.reset_prefix_cache()
    assert engine.take_kv_events() == [AllBlocksCleared()]
    assert engine.kv.cached_prefix(chain_block_hashes(list(range(100, 109)), 4,
                                                      ("/model/m", None))) == []


def test_without_events_enabled_nothing_is_recorded() -> None:
    engine = make_engine(blocks=3, block_size=4, seqs=1)
    engine.add(make_request("a", 8, max_tokens=1), 0.0)
    Clock(engine).run()
    assert engine.take_kv_events() == []


def test_config_is_vllms_json() -> None:
    cfg = parse_kv_events_config('{"enable_kv_cache_events": true, "publisher": "zmq", '
                                 '"endpoint": "tcp://*:5557", "replay_endpoint": "tcp://*:5558", '
                                 '"topic": "kv-events", "buffer_steps": 100}')
    assert cfg.active and cfg.topic == "kv-events" and cfg.buffer_steps == 100
    assert not parse_kv_events_config('{"enable_kv_cache_events": false}').active
    assert not parse_kv_events_config('{"enable_kv_cache_events": true, "publisher": "null"}').active
    for bad in ('{"endpont": "x"}', "[1]", "{", '{"publisher": "kafka"}'):
        with pytest.raises(ValueError):
            parse_kv_events_config(bad)


def test_replica_ports_are_offset_by_index() -> None:
    assert offset_endpoint("tcp://*:5557", 2) == "tcp://*:5559"
    assert offset_endpoint("inproc://kv", 1) == "inproc://kv_dp1"
    cfg = KVEventsConfig(True, "zmq", "tcp://*:5557", "tcp://*:6557")
    assert replica_endpoints(cfg, 2) == [("tcp://*:5557", "tcp://*:6557"),
                                         ("tcp://*:5558", "tcp://*:6558")]
    with pytest.raises(ValueError, match="overlap"):
        replica_endpoints(KVEventsConfig(True, "zmq", "tcp://*:5557", "tcp://*:5558"), 2)


def _recv(sub: zmq.Socket[bytes]) -> tuple[bytes, int, bytes]:
    assert sub.poll(5000), "no KV event batch arrived"
    topic, seq, payload = sub.recv_multipart()
    return topic, int.from_bytes(seq, "big"), payload


def test_pub_sequence_and_replay() -> None:
    port, replay_port = free_port(), free_port()
    cfg = KVEventsConfig(True, "zmq", f"tcp://*:{port}", f"tcp://*:{replay_port}",
                         buffer_steps=3, topic="kv-events")
    pub = ZmqEventPublisher(cfg, cfg.endpoint, cfg.replay_endpoint)
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    dealer = ctx.socket(zmq.DEALER)
    try:
        sub.setsockopt(zmq.SUBSCRIBE, b"kv-events")
        sub.connect(f"tcp://127.0.0.1:{port}")
        # PUB drops what it sends before the subscription arrives: probe until one lands.
        deadline = time.monotonic() + 5
        seqs: list[int] = []
        while not seqs and time.monotonic() < deadline:
            pub.publish([AllBlocksCleared()])
            if sub.poll(100):
                seqs.append(_recv(sub)[1])
        assert seqs
        for i in range(4):
            pub.publish([BlockRemoved([i], "GPU")])
        for _ in range(4):
            topic, seq, payload = _recv(sub)
            assert topic == b"kv-events"
            seqs.append(seq)
        assert seqs == list(range(seqs[0], seqs[0] + 5))  # no gaps
        assert decode_batch(payload).events == [BlockRemoved([3], "GPU")]
        # Replay from a sequence number: the bounded buffer holds the last 3 batches.
        dealer.connect(f"tcp://127.0.0.1:{replay_port}")
        dealer.send_multipart([b"", (seqs[-2]).to_bytes(8, "big")])
        got: list[int] = []
        while True:
            assert dealer.poll(5000)
            _, topic, seq_bytes, body = dealer.recv_multipart()  # vLLM 0.32's replay shape
            if seq_bytes == END_SEQ:
                assert (topic, body) == (b"", b"")
                break
            assert topic == b"kv-events"
            got.append(int.from_bytes(seq_bytes, "big"))
        assert got == seqs[-2:]
        dealer.send_multipart([b"", (0).to_bytes(8, "big")])
        got = []
        while True:
            assert dealer.poll(5000)
            _, _, seq_bytes, _ = dealer.recv_multipart()
            if seq_bytes == END_SEQ:
                break
            got.append(int.from_bytes(seq_bytes, "big"))
        assert got == seqs[-3:]
    finally:
        sub.close(linger=0)
        dealer.close(linger=0)
        ctx.term()
        pub.close()

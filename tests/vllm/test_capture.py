"""What a real vLLM 0.32 CPU server sent (tests/fixtures/vllm-kv-events.json), read by poolgate.

The fixture is recorded by `scripts/vllm/capture_kv_events.py` (`make vllm-capture`); these
tests need no vLLM and run in `make test`. They hold poolgate's decoder and the simulator's
encoder to the captured bytes, and poolgate's Hugging Face tokenizer to vLLM's `/tokenize`.
"""

from __future__ import annotations

import base64
import importlib.util
import json
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import msgpack
import pytest

from poolgate.core.kv_events import (
    END_SEQ,
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    decode_batch,
)
from poolgate.scheduling.tokenizer import RequestTokenizer, load_tokenizer
from poolgate.sim.kv_events import _payload as sim_payload

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vllm-kv-events.json"
BUILDER = Path(__file__).resolve().parents[2] / "scripts" / "vllm" / "build_tiny_model.py"
# Fields vLLM 0.32 sends that the simulator does not (it has no multimodal inputs, cache salts
# or hybrid cache groups); poolgate's decoder ignores them.
NOT_IN_SIM = {"extra_keys", "group_idx", "kv_cache_spec_kind"}


@cache
def capture() -> dict[str, Any]:
    return json.loads(FIXTURE.read_text())  # type: ignore[no-any-return]


def frames(record: dict[str, Any]) -> list[bytes]:
    return [base64.b64decode(f) for f in record["frames_b64"]]


def published_after(step: str) -> list[dict[str, Any]]:
    return [b for b in capture()["published"] if b["after"] == step]


def tokens(name: str) -> list[int]:
    return list(capture()["tokenize"][name]["tokens"])


def block_size() -> int:
    stored = [e for b in capture()["published"] for e in b["decoded"][1]
              if e["type"] == "BlockStored"]
    return int(stored[0]["block_size"])


def test_the_capture_is_vllm_0_32() -> None:
    assert capture()["vllm_version"].startswith("0.32.")
    sources = capture()["kv_event_sources"]["0"]
    assert sources["enable_kv_cache_events"] and sources["topic"] == "kv"


def test_batches_are_arrays_and_events_are_maps_tagged_by_type() -> None:
    for batch in capture()["published"]:
        topic, seq, payload = frames(batch)
        assert topic == b"kv" and int.from_bytes(seq, "big") == batch["seq"]
        raw = msgpack.unpackb(payload)
        assert isinstance(raw, list) and len(raw) == 3 and raw[2] == 0
        for event in raw[1]:
            assert isinstance(event, dict)
            assert event["type"] in {"BlockStored", "BlockRemoved", "AllBlocksCleared"}
            for h in event.get("block_hashes", []):
                assert isinstance(h, int) and 0 <= h < 2**64  # VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES
    seqs = [b["seq"] for b in capture()["published"]]
    assert seqs == list(range(len(seqs)))


def test_poolgate_decodes_every_captured_batch() -> None:
    kinds: set[type] = set()
    for batch in capture()["published"]:
        _, _, payload = frames(batch)
        decoded = decode_batch(payload)
        assert decoded.data_parallel_rank == 0
        raw_events = batch["decoded"][1]
        assert len(decoded.events) == len(raw_events)
        for ours, theirs in zip(decoded.events, raw_events, strict=True):
            kinds.add(type(ours))
            assert type(ours).__name__ == theirs["type"]
            if isinstance(ours, BlockStored):
                assert list(ours.block_hashes) == theirs["block_hashes"]
                assert ours.parent_block_hash == theirs["parent_block_hash"]
                assert list(ours.token_ids) == theirs["token_ids"]
                assert ours.block_size == theirs["block_size"] == block_size()
                assert len(ours.token_ids) == len(ours.block_hashes) * ours.block_size
                assert (ours.medium, ours.lora_name, ours.lora_id) == ("GPU", None, None)
            elif isinstance(ours, BlockRemoved):
                assert list(ours.block_hashes) == theirs["block_hashes"]
    assert kinds == {BlockStored, BlockRemoved, AllBlocksCleared}


def _stored(step: str) -> list[BlockStored]:
    return [e for b in published_after(step) for e in decode_batch(frames(b)[2]).events
            if isinstance(e, BlockStored)]


def test_stored_blocks_carry_the_tokenize_ids_and_chain_by_parent() -> None:
    size = block_size()
    first = _stored("first")
    # The prompt's full blocks at the prefill step, then the block that generated tokens filled.
    assert first[0].parent_block_hash is None
    prompt = tokens("first")
    assert list(first[0].token_ids) == prompt[: len(first[0].block_hashes) * size]
    assert first[1].parent_block_hash == first[0].block_hashes[-1]
    # The second prompt shares the first blocks: only what follows is stored, chained to them.
    second = _stored("shares_prefix")
    shared = next(i for i, (a, b) in enumerate(zip(prompt, tokens("shares_prefix"),
                                                   strict=False)) if a != b) // size
    assert second[0].parent_block_hash == first[0].block_hashes[shared - 1]
    start = shared * size
    assert list(second[0].token_ids) == tokens("shares_prefix")[start: start + size]
    # A chat is stored from its rendered template's ids, BOS included.
    chat = _stored("chat")
    assert chat[0].parent_block_hash is None
    assert list(chat[0].token_ids) == tokens("chat")[: len(chat[0].block_hashes) * size]


def test_reset_is_published_with_the_next_step() -> None:
    assert published_after("reset_prefix_cache") == []
    events = decode_batch(frames(published_after("after_reset")[0])[2]).events
    assert isinstance(events[0], AllBlocksCleared) and isinstance(events[1], BlockStored)


def test_replay_answers_with_topic_seq_payload_then_end() -> None:
    published = {b["seq"]: frames(b)[2] for b in capture()["published"]}
    replay = [frames(r) for r in capture()["replay_from_0"]]
    *batches, end = replay
    assert end == [b"", b"", END_SEQ, b""]
    assert [f[:2] for f in batches] == [[b"", b"kv"]] * len(batches)
    assert {int.from_bytes(f[2], "big"): f[3] for f in batches} == published
    last = [frames(r) for r in capture()["replay_from_last"]]
    assert [int.from_bytes(f[2], "big") for f in last[:-1]] == [max(published)]


@pytest.mark.parametrize("index", range(len(capture()["published"])))
def test_the_simulator_encodes_the_same_shape(index: int) -> None:
    batch = capture()["published"][index]
    _, _, payload = frames(batch)
    decoded = decode_batch(payload)
    # The events as the simulator's engine makes them: no KV-cache group.
    events = [replace(e, group_idx=None) if isinstance(e, BlockStored | BlockRemoved) else e
              for e in decoded.events]
    ours = msgpack.unpackb(sim_payload(decoded.ts, events, 0))
    theirs = msgpack.unpackb(payload)
    assert ours[0] == theirs[0] and ours[2] == theirs[2]
    trimmed = [{k: v for k, v in e.items() if k not in NOT_IN_SIM} for e in theirs[1]]
    assert ours[1] == trimmed


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> RequestTokenizer:
    """The tiny model's tokenizer, rebuilt here by the script that built the captured model's
    (it is deterministic), as poolgate loads it."""
    spec = importlib.util.spec_from_file_location("build_tiny_model", BUILDER)
    assert spec is not None and spec.loader is not None
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    directory = tmp_path_factory.mktemp("tiny-tokenizer")
    builder.build_tokenizer(directory)
    return load_tokenizer(str(directory))


@pytest.mark.parametrize("name", [n for n in capture()["tokenize"] if n != "chat"])
def test_poolgate_tokenizes_completions_as_vllm_did(tiny_tokenizer: RequestTokenizer,
                                                     name: str) -> None:
    texts = {**capture()["prompts"],
             **{f"filler{i}": t for i, t in enumerate(capture()["fillers"])}}
    text = texts[name]
    assert tiny_tokenizer.token_ids({"model": "tiny", "prompt": text}) == tokens(name)


def test_poolgate_renders_and_tokenizes_the_chat_as_vllm_did(
        tiny_tokenizer: RequestTokenizer) -> None:
    body = {"model": "tiny", "messages": capture()["chat"]}
    assert tiny_tokenizer.token_ids(body) == tokens("chat")

"""vLLM's KV-event wire format: positional arrays (0.32 and older), tagged maps (newer)."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest

from poolgate.core.kv_events import (
    AllBlocksCleared,
    BlockRemoved,
    BlockStored,
    EventBatch,
    KVEventDecodeError,
    decode_batch,
    encode_batch,
)

STORED = BlockStored([1, 2], None, [5] * 8, 4, None, "GPU", None)


def _packed(value: Any) -> bytes:
    out = msgpack.packb(value)
    assert isinstance(out, bytes)
    return out


def test_arrays_are_vllm_032s_tagged_arrays() -> None:
    payload = encode_batch(12.5, [STORED, BlockRemoved([1], "GPU"), AllBlocksCleared()], 0)
    assert msgpack.unpackb(payload) == [
        12.5,
        [["BlockStored", [1, 2], None, [5] * 8, 4, None, "GPU", None],
         ["BlockRemoved", [1], "GPU"], ["AllBlocksCleared"]],
        0,
    ]
    assert decode_batch(payload) == EventBatch(
        12.5, [STORED, BlockRemoved([1], "GPU"), AllBlocksCleared()], 0)


@pytest.mark.parametrize(("wire", "event"), [
    pytest.param(["BlockStored", [7], 3, [1, 2], 2, 5], BlockStored([7], 3, [1, 2], 2, 5),
                 id="stored-before-medium"),
    pytest.param(["BlockStored", [7], 3, [1, 2], 2, None, "GPU"],
                 BlockStored([7], 3, [1, 2], 2, None, "GPU"), id="stored-before-lora-name"),
    pytest.param(["BlockRemoved", [7]], BlockRemoved([7]), id="removed-before-medium"),
])
def test_older_arrays_end_early(wire: list[Any], event: object) -> None:
    batch = decode_batch(_packed([1.0, [wire]]))
    assert batch.events == [event]
    assert batch.data_parallel_rank is None


def test_maps_are_newer_vllms_tagged_maps_with_unknown_fields_ignored() -> None:
    payload = _packed({
        "ts": 3.0, "data_parallel_rank": 2,
        "events": [
            {"type": "BlockStored", "block_hashes": [b"\x01" * 32, b"\x02" * 32],
             "parent_block_hash": b"\x00" * 32, "token_ids": [9] * 4, "block_size": 2,
             "lora_id": 1, "medium": "GPU", "lora_name": "sql-lora",
             "extra_keys": [["sql-lora"], None], "group_idx": 0,
             "kv_cache_spec_kind": "full_attention", "some_future_field": {"x": 1}},
            {"type": "BlockRemoved", "block_hashes": [b"\x01" * 32], "medium": "GPU",
             "group_idx": 1},
            {"type": "AllBlocksCleared"},
        ],
    })
    batch = decode_batch(payload)
    assert batch == EventBatch(3.0, [
        BlockStored([b"\x01" * 32, b"\x02" * 32], b"\x00" * 32, [9] * 4, 2, 1, "GPU",
                    "sql-lora", 0),
        BlockRemoved([b"\x01" * 32], "GPU", 1),
        AllBlocksCleared(),
    ], 2)


def test_maps_leave_out_fields_at_their_defaults() -> None:
    payload = _packed({"ts": 1, "events": [
        {"type": "BlockStored", "block_hashes": [5], "token_ids": [1, 2], "block_size": 2}]})
    assert decode_batch(payload).events == [BlockStored([5], None, [1, 2], 2)]


@pytest.mark.parametrize("array_like", [True, False], ids=["arrays", "maps"])
def test_encode_round_trips_in_both_shapes(array_like: bool) -> None:
    events = [BlockStored([b"\xaa" * 8], 17, [1, 2, 3, 4], 4, 2, "GPU", "a", None),
              BlockRemoved([17, b"\xaa" * 8], "GPU"), AllBlocksCleared()]
    batch = decode_batch(encode_batch(2.0, events, 1, array_like=array_like))
    assert batch == EventBatch(2.0, events, 1)


@pytest.mark.parametrize("payload", [
    pytest.param(b"\xc1", id="not-msgpack"),
    pytest.param(_packed(5), id="scalar"),
    pytest.param(_packed([1.0]), id="array-without-events"),
    pytest.param(_packed({"events": []}), id="map-without-ts"),
    pytest.param(_packed([1.0, [["Mystery", 1]]]), id="unknown-tag"),
    pytest.param(_packed([1.0, [{"type": "Mystery"}]]), id="unknown-map-tag"),
    pytest.param(_packed([1.0, [["BlockStored", [1]]]]), id="stored-too-short"),
    pytest.param(_packed([1.0, [{"type": "BlockStored", "block_hashes": [1]}]]),
                 id="stored-map-without-tokens"),
    pytest.param(_packed([1.0, [["BlockStored", [1.5], None, [], 1]]]), id="float-hash"),
    pytest.param(_packed([1.0, [["BlockRemoved", "abc"]]]), id="hashes-not-array"),
    pytest.param(_packed([1.0, [{"type": "BlockRemoved"}]]), id="removed-map-without-hashes"),
    pytest.param(_packed([1.0, [5]]), id="event-scalar"),
    pytest.param(_packed(["x", []]), id="ts-not-number"),
])
def test_malformed_payloads_raise_one_error_type(payload: bytes) -> None:
    with pytest.raises(KVEventDecodeError):
        decode_batch(payload)

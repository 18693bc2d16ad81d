"""vLLM's KV-cache events on the wire: the event types, and msgpack encoding and decoding.

Shared by the simulator, which publishes them, and the gateway, which reads them. vLLM defines
them as msgspec structs (`vllm/distributed/kv_events.py`); their encoding has changed between
releases, and every shape is read here:

- events as maps tagged by `type` (vLLM 0.32, captured in `tests/fixtures/vllm-kv-events.json`,
  and later): `{"type": "BlockStored", "block_hashes": ..., ...}`; fields at their default may be
  left out, and fields this module does not know (`extra_keys`, `group_idx`,
  `kv_cache_spec_kind`, ...) are ignored;
- events as tagged positional arrays (older releases): `["BlockStored", block_hashes,
  parent_block_hash, token_ids, block_size, lora_id, medium, lora_name]`, `["BlockRemoved",
  block_hashes, medium]`, `["AllBlocksCleared"]`; the oldest stop earlier (no medium, no
  lora_name), so missing trailing fields take their defaults;
- the batch as a positional array `[ts, [event, ...], data_parallel_rank]` (vLLM 0.32; older
  releases without the rank) or as a map `{"ts", "events", "data_parallel_rank"}`.

Block hashes are ints (vLLM 0.32, and later with `VLLM_KV_EVENTS_USE_INT_BLOCK_HASHES`) or
bytes (newer vLLM's default); both are kept as they come, as hashable keys that are only ever
compared with other hashes of the same server.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgpack

MEDIUM_GPU = "GPU"
# The replay socket's "no more batches" sequence number.
END_SEQ = (-1).to_bytes(8, "big", signed=True)

BlockHash = int | bytes


class KVEventDecodeError(ValueError):
    """A payload that is not a KV-event batch in either of vLLM's shapes."""


@dataclass(frozen=True, slots=True)
class BlockStored:
    """Full blocks newly stored in the prefix cache (one contiguous run of one request).

    `token_ids` holds `block_size` tokens per hash, in order; `parent_block_hash` is the block
    before the first one (None at the start of a prompt). `group_idx` is the KV-cache group of
    hybrid models (None or 0 for the usual single group).
    """

    block_hashes: Sequence[BlockHash]
    parent_block_hash: BlockHash | None
    token_ids: Sequence[int]
    block_size: int
    lora_id: int | None = None
    medium: str | None = None
    lora_name: str | None = None
    group_idx: int | None = None


@dataclass(frozen=True, slots=True)
class BlockRemoved:
    """Cached blocks evicted from the prefix cache."""

    block_hashes: Sequence[BlockHash]
    medium: str | None = None
    group_idx: int | None = None


@dataclass(frozen=True, slots=True)
class AllBlocksCleared:
    """The whole prefix cache was reset."""


KVEvent = BlockStored | BlockRemoved | AllBlocksCleared


@dataclass(frozen=True, slots=True)
class EventBatch:
    """One engine step's events, as one published message."""

    ts: float
    events: Sequence[KVEvent]
    data_parallel_rank: int | None = None


# -- encoding --------------------------------------------------------------------------------

def event_to_wire(event: KVEvent, array_like: bool = True) -> list[Any] | dict[str, Any]:
    """One event as vLLM encodes it: a tagged array (vLLM 0.32) or a tagged map (newer)."""
    if isinstance(event, BlockStored):
        if array_like:
            return ["BlockStored", event.block_hashes, event.parent_block_hash, event.token_ids,
                    event.block_size, event.lora_id, event.medium, event.lora_name]
        out: dict[str, Any] = {
            "type": "BlockStored", "block_hashes": event.block_hashes,
            "parent_block_hash": event.parent_block_hash, "token_ids": event.token_ids,
            "block_size": event.block_size, "lora_id": event.lora_id, "medium": event.medium,
            "lora_name": event.lora_name}
        if event.group_idx is not None:
            out["group_idx"] = event.group_idx
        return out
    if isinstance(event, BlockRemoved):
        if array_like:
            return ["BlockRemoved", event.block_hashes, event.medium]
        out = {"type": "BlockRemoved", "block_hashes": event.block_hashes,
               "medium": event.medium}
        if event.group_idx is not None:
            out["group_idx"] = event.group_idx
        return out
    return ["AllBlocksCleared"] if array_like else {"type": "AllBlocksCleared"}


def encode_batch(ts: float, events: Sequence[KVEvent], data_parallel_rank: int | None = 0,
                 array_like: bool = True) -> bytes:
    """A `KVEventBatch` payload in either shape."""
    wire = [event_to_wire(e, array_like) for e in events]
    body: list[Any] | dict[str, Any]
    if array_like:
        body = [ts, wire] if data_parallel_rank is None else [ts, wire, data_parallel_rank]
    else:
        body = {"ts": ts, "events": wire}
        if data_parallel_rank is not None:
            body["data_parallel_rank"] = data_parallel_rank
    packed = msgpack.packb(body)
    assert isinstance(packed, bytes)
    return packed


# -- decoding --------------------------------------------------------------------------------

def decode_batch(payload: bytes) -> EventBatch:
    """Parse a `KVEventBatch` payload of either shape; raises `KVEventDecodeError`."""
    try:
        raw = msgpack.unpackb(payload, raw=False, strict_map_key=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as e:
        raise KVEventDecodeError(f"not msgpack: {e}") from None
    try:
        if isinstance(raw, Mapping):
            ts, items, rank = raw["ts"], raw["events"], raw.get("data_parallel_rank")
        elif isinstance(raw, list) and len(raw) >= 2:
            ts, items = raw[0], raw[1]
            rank = raw[2] if len(raw) > 2 else None
        else:
            raise KVEventDecodeError(f"a batch is an array or a map, got {type(raw).__name__}")
        if not isinstance(items, list):
            raise KVEventDecodeError("a batch's events are not an array")
        return EventBatch(float(ts), [decode_event(item) for item in items],
                          None if rank is None else int(rank))
    except KeyError as e:
        raise KVEventDecodeError(f"batch without {e.args[0]!r}") from None
    except (TypeError, ValueError) as e:
        if isinstance(e, KVEventDecodeError):
            raise
        raise KVEventDecodeError(f"malformed batch: {e}") from None


def decode_event(item: Any) -> KVEvent:
    """One event from a tagged array or a tagged map."""
    if isinstance(item, Mapping):
        return _from_map(item)
    if isinstance(item, list) and item:
        return _from_array(item)
    raise KVEventDecodeError(f"an event is a tagged array or map, got {item!r:.80}")


def _at(item: list[Any], i: int) -> Any:
    return item[i] if len(item) > i else None


def _hashes(value: Any) -> list[BlockHash]:
    if not isinstance(value, list):
        raise KVEventDecodeError("block_hashes is not an array")
    for h in value:
        if not isinstance(h, int | bytes):
            raise KVEventDecodeError(f"a block hash is an int or bytes, got {h!r:.40}")
    return value


def _parent(value: Any) -> BlockHash | None:
    if value is None or isinstance(value, int | bytes):
        return value
    raise KVEventDecodeError(f"parent_block_hash is an int, bytes or nil, got {value!r:.40}")


def _tokens(value: Any) -> list[int]:
    if not isinstance(value, list):
        raise KVEventDecodeError("token_ids is not an array")
    return value


def _from_array(item: list[Any]) -> KVEvent:
    tag = item[0]
    if tag == "BlockStored":
        if len(item) < 5:
            raise KVEventDecodeError("BlockStored needs hashes, parent, tokens and block size")
        return BlockStored(_hashes(item[1]), _parent(item[2]), _tokens(item[3]), int(item[4]),
                           _at(item, 5), _at(item, 6), _at(item, 7))
    if tag == "BlockRemoved":
        if len(item) < 2:
            raise KVEventDecodeError("BlockRemoved needs its block hashes")
        return BlockRemoved(_hashes(item[1]), _at(item, 2))
    if tag == "AllBlocksCleared":
        return AllBlocksCleared()
    raise KVEventDecodeError(f"unknown KV event tag {tag!r:.40}")


def _from_map(item: Mapping[str, Any]) -> KVEvent:
    tag = item.get("type")
    get = item.get
    if tag == "BlockStored":
        try:
            return BlockStored(_hashes(item["block_hashes"]), _parent(get("parent_block_hash")),
                               _tokens(item["token_ids"]), int(item["block_size"]),
                               get("lora_id"), get("medium"), get("lora_name"), get("group_idx"))
        except KeyError as e:
            raise KVEventDecodeError(f"BlockStored without {e.args[0]!r}") from None
    if tag == "BlockRemoved":
        if "block_hashes" not in item:
            raise KVEventDecodeError("BlockRemoved without 'block_hashes'")
        return BlockRemoved(_hashes(item["block_hashes"]), get("medium"), get("group_idx"))
    if tag == "AllBlocksCleared":
        return AllBlocksCleared()
    raise KVEventDecodeError(f"unknown KV event tag {tag!r:.40}")

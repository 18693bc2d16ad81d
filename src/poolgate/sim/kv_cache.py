"""The paged KV cache with prefix caching: reference-counted blocks, chained hashes, LRU eviction."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import msgpack


@dataclass(eq=False, slots=True)
class Block:
    """One KV-cache block of `block_size` token slots."""

    block_id: int
    ref_count: int = 0
    block_hash: int | None = None


def chain_block_hashes(
    token_ids: Sequence[int], block_size: int, extra_key: object, known: Sequence[int] = ()
) -> list[int]:
    """Hashes of every FULL block of `token_ids`, each chained to its parent's.

    `extra_key` (model and adapter) is part of every hash so that two adapters never share a
    block. `known` are hashes already computed for the leading blocks; they are reused.

    Like vLLM's (sha256 over parent hash, block tokens and extra keys, published in KV events as
    the digest's last 8 bytes read as a big-endian unsigned integer), each hash is deterministic
    across processes: `block_hash(parent, tokens, extra_key)`, the first block's parent is None.
    """
    hashes = list(known)
    parent: int | None = hashes[-1] if hashes else None
    for i in range(len(hashes), len(token_ids) // block_size):
        parent = block_hash(parent, token_ids[i * block_size : (i + 1) * block_size], extra_key)
        hashes.append(parent)
    return hashes


def block_hash(parent: int | None, block_tokens: Sequence[int], extra_key: object) -> int:
    """One block's hash: sha256 of msgpack `[parent, tokens, extra_key]`, last 8 bytes, big-endian."""
    packed = msgpack.packb([parent, list(block_tokens), extra_key])
    return int.from_bytes(hashlib.sha256(packed).digest()[-8:], "big")


class KVCache:
    """A fixed pool of blocks; free blocks keep their hash (and stay hittable) until evicted.

    Free blocks sit in one queue in eviction order: a block freed last is evicted last, and a
    request frees its blocks tail first so that a shared prefix outlives its private suffix.
    """

    def __init__(self, num_blocks: int, block_size: int) -> None:
        if num_blocks < 1 or block_size < 1:
            raise ValueError("the KV cache needs at least one block of at least one token")
        self.num_blocks = num_blocks
        self.block_size = block_size
        self._blocks = [Block(i) for i in range(num_blocks)]
        self._free: OrderedDict[int, Block] = OrderedDict((b.block_id, b) for b in self._blocks)
        self._cached: dict[int, Block] = {}
        # Hashes evicted since the last `take_evicted` (only collected when `track_evictions`).
        self.track_evictions = False
        self._evicted: list[int] = []

    def take_evicted(self) -> list[int]:
        """Hashes of cached blocks evicted since the last call, in eviction order."""
        out, self._evicted = self._evicted, []
        return out

    @property
    def num_free(self) -> int:
        """Blocks no running request holds (cached or empty)."""
        return len(self._free)

    @property
    def usage(self) -> float:
        """Fraction of blocks held by running requests (vLLM's kv_cache_usage_perc)."""
        return 1.0 - len(self._free) / self.num_blocks

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks needed to hold `num_tokens` tokens."""
        return -(-num_tokens // self.block_size)

    def cached_prefix(self, block_hashes: Sequence[int]) -> list[Block]:
        """The longest run of leading blocks whose hashes are cached."""
        hits: list[Block] = []
        for h in block_hashes:
            block = self._cached.get(h)
            if block is None:
                break
            hits.append(block)
        return hits

    def can_allocate(self, num_new: int, reused: Sequence[Block]) -> bool:
        """Whether `num_new` fresh blocks fit after taking `reused` cached blocks out of the free queue."""
        reclaimed = sum(1 for b in reused if b.ref_count == 0)
        return num_new <= len(self._free) - reclaimed

    def acquire(self, reused: Sequence[Block]) -> None:
        """Take a reference on cached blocks (a prefix hit)."""
        for b in reused:
            if b.ref_count == 0:
                del self._free[b.block_id]
            b.ref_count += 1

    def allocate(self, num_new: int) -> list[Block]:
        """Take `num_new` blocks from the head of the free queue, evicting their cached content."""
        if num_new > len(self._free):
            raise RuntimeError(f"asked for {num_new} KV blocks, {len(self._free)} free")
        out: list[Block] = []
        for _ in range(num_new):
            _, b = self._free.popitem(last=False)
            if b.block_hash is not None:
                if self._cached.get(b.block_hash) is b:
                    del self._cached[b.block_hash]
                    if self.track_evictions:
                        self._evicted.append(b.block_hash)
                b.block_hash = None
            b.ref_count = 1
            out.append(b)
        return out

    def cache(self, block: Block, block_hash: int) -> bool:
        """Publish a full, computed block under its hash (a duplicate keeps the first copy).

        True when the block was newly stored (vLLM emits `BlockStored` only for those).
        """
        if block.block_hash is not None or block_hash in self._cached:
            return False
        block.block_hash = block_hash
        self._cached[block_hash] = block
        return True

    def reset(self) -> bool:
        """Forget every cached hash (vLLM's reset_prefix_cache); refused while blocks are in use."""
        if len(self._free) != self.num_blocks:
            return False
        self._cached.clear()
        self._evicted.clear()
        for b in self._blocks:
            b.block_hash = None
        return True

    def release(self, blocks: Sequence[Block]) -> None:
        """Drop one reference on each block; unreferenced blocks join the free queue tail first."""
        for b in reversed(blocks):
            b.ref_count -= 1
            if b.ref_count == 0:
                self._free[b.block_id] = b

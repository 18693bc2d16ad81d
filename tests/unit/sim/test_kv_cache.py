"""The block pool: reference counts, cached-free blocks, tail-first release, chained hashes."""

from __future__ import annotations

import pytest

from poolgate.sim.kv_cache import KVCache, chain_block_hashes


def test_chained_hashes_depend_on_parent_and_extra_key() -> None:
    a = chain_block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9], 4, "base")
    assert len(a) == 2  # the partial third block has no hash
    assert chain_block_hashes([9, 9, 9, 9, 5, 6, 7, 8], 4, "base")[1] != a[1]
    assert chain_block_hashes([1, 2, 3, 4, 5, 6, 7, 8], 4, "lora")[0] != a[0]
    assert chain_block_hashes([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], 4, "base", a)[:2] == a


def test_shared_blocks_are_reference_counted() -> None:
    kv = KVCache(4, 4)
    blocks = kv.allocate(2)
    kv.cache(blocks[0], 111)
    hits = kv.cached_prefix([111, 222])
    assert hits == [blocks[0]]
    kv.acquire(hits)
    kv.release(blocks)
    assert kv.num_free == 3  # the shared block is still held once
    kv.release(hits)
    assert kv.num_free == 4 and kv.usage == 0.0
    assert kv.cached_prefix([111]) == [blocks[0]]  # free but still cached


def test_can_allocate_counts_reclaimed_cached_blocks() -> None:
    kv = KVCache(2, 4)
    b = kv.allocate(1)
    kv.cache(b[0], 7)
    kv.release(b)
    hits = kv.cached_prefix([7])
    assert kv.can_allocate(1, hits) and not kv.can_allocate(2, hits)


def test_allocation_evicts_and_refuses_beyond_capacity() -> None:
    kv = KVCache(1, 4)
    b = kv.allocate(1)
    kv.cache(b[0], 5)
    kv.release(b)
    kv.allocate(1)
    assert kv.cached_prefix([5]) == []
    with pytest.raises(RuntimeError):
        kv.allocate(1)

"""The KV block index: re-keying vLLM's blocks by their tokens, removal, bounds, matching."""

from __future__ import annotations

import pytest

from poolgate.core.kv_events import AllBlocksCleared, BlockRemoved, BlockStored
from poolgate.datalayer.kv_index import KVBlockIndex, block_keys, root_key

BS = 4
A, B, C = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"


def _ids(n: int, start: int = 100) -> list[int]:
    return list(range(start, start + n))


def _store(index: KVBlockIndex, address: str, tokens: list[int], engine: list[int],
           parent: int | None = None, lora: str | None = None) -> int:
    return index.apply(address, [BlockStored(engine, parent, tokens, BS, None, "GPU", lora)])


def _request_keys(tokens: list[int], lora: str | None = None) -> list[int]:
    return block_keys(tokens, BS, root_key(lora))


def test_blocks_are_rekeyed_from_their_tokens_whatever_the_engine_hashes() -> None:
    index = KVBlockIndex()
    prompt = _ids(12)
    # Two servers with different (random-seeded) engine hashes for the same tokens.
    _store(index, A, prompt, [11, 12, 13])
    _store(index, B, prompt[:8], [b"\x01" * 32, b"\x02" * 32])
    keys = _request_keys([*prompt, 7, 7])  # a partial block at the end is not a block
    assert len(keys) == 3
    assert index.match_lengths(keys, {A, B, C}) == {A: 3, B: 2}
    assert index.match_lengths(keys, {B, C}) == {B: 2}
    assert index.blocks(A) == 3 and index.block_size(A) == BS


def test_a_continuation_finds_its_parent_by_engine_hash() -> None:
    index = KVBlockIndex()
    prompt = _ids(16)
    _store(index, A, prompt[:8], [11, 12])
    assert _store(index, A, prompt[8:], [13, 14], parent=12) == 0
    assert index.match_lengths(_request_keys(prompt), {A}) == {A: 4}
    # A different prompt sharing the first block only.
    other = prompt[:4] + _ids(4, start=900)
    assert index.match_lengths(_request_keys(other), {A}) == {A: 1}


def test_an_unknown_parent_drops_the_blocks_and_counts_them() -> None:
    index = KVBlockIndex()
    prompt = _ids(16)
    assert _store(index, A, prompt[8:], [13, 14], parent=12) == 2
    assert index.blocks(A) == 0
    assert index.match_lengths(_request_keys(prompt), {A}) == {}


def test_adapters_seed_their_own_chains() -> None:
    index = KVBlockIndex()
    prompt = _ids(8)
    _store(index, A, prompt, [1, 2], lora="sql-lora")
    assert index.match_lengths(_request_keys(prompt), {A}) == {}
    assert index.match_lengths(_request_keys(prompt, "sql-lora"), {A}) == {A: 2}
    # Older vLLM named only an id: such blocks never match a request.
    index.apply(B, [BlockStored([5, 6], None, prompt, BS, 3, "GPU", None)])
    assert index.match_lengths(_request_keys(prompt), {B}) == {}
    assert index.blocks(B) == 2


def test_removal_and_a_hole_in_the_chain() -> None:
    index = KVBlockIndex()
    prompt = _ids(16)
    _store(index, A, prompt, [11, 12, 13, 14])
    _store(index, B, prompt, [21, 22, 23, 24])
    index.apply(A, [BlockRemoved([12], "GPU")])
    # A lost block 1: its later blocks are still cached but a lookup stops at the hole.
    assert index.match_lengths(_request_keys(prompt), {A, B}) == {A: 1, B: 4}
    index.apply(B, [BlockRemoved([21, 999], "GPU")])  # unknown hashes are ignored
    assert index.match_lengths(_request_keys(prompt), {A, B}) == {A: 1}


def test_cleared_and_retained() -> None:
    index = KVBlockIndex()
    prompt = _ids(8)
    _store(index, A, prompt, [1, 2])
    _store(index, B, prompt, [1, 2])
    index.apply(A, [AllBlocksCleared()])
    assert index.match_lengths(_request_keys(prompt), {A, B}) == {B: 2}
    index.trust_from(B, 0.0)
    index.retain([A])
    assert index.blocks(B) == 0 and not index.usable(B, 1.0)
    assert index.match_lengths(_request_keys(prompt), {A, B}) == {}


def test_a_hash_stored_twice_is_refreshed_not_doubled() -> None:
    index = KVBlockIndex()
    prompt = _ids(8)
    _store(index, A, prompt, [1, 2])
    _store(index, A, prompt, [1, 2])
    assert index.blocks(A) == 2
    index.apply(A, [BlockRemoved([1, 2])])
    assert index.blocks(A) == 0 and index.match_lengths(_request_keys(prompt), {A}) == {}


def test_two_engine_hashes_for_one_key_count_separately() -> None:
    # Same tokens under two cache salts: vLLM stores both; ours is one key held twice.
    index = KVBlockIndex()
    prompt = _ids(4)
    _store(index, A, prompt, [1])
    _store(index, A, prompt, [2])
    index.apply(A, [BlockRemoved([1])])
    assert index.match_lengths(_request_keys(prompt), {A}) == {A: 1}
    index.apply(A, [BlockRemoved([2])])
    assert index.match_lengths(_request_keys(prompt), {A}) == {}


def test_the_per_endpoint_bound_evicts_the_oldest() -> None:
    index = KVBlockIndex(max_blocks_per_endpoint=3)
    first, second = _ids(8), _ids(8, start=500)
    _store(index, A, first, [1, 2])
    _store(index, A, second, [3, 4])
    assert index.blocks(A) == 3
    assert index.match_lengths(_request_keys(first), {A}) == {}  # block 0 went first
    assert index.match_lengths(_request_keys(second), {A}) == {A: 2}


def test_other_kv_cache_groups_are_not_indexed() -> None:
    index = KVBlockIndex()
    prompt = _ids(4)
    index.apply(A, [BlockStored([1], None, prompt, BS, group_idx=1)])
    assert index.blocks(A) == 0
    index.apply(A, [BlockStored([1], None, prompt, BS, group_idx=0)])
    index.apply(A, [BlockRemoved([1], group_idx=1)])
    assert index.blocks(A) == 1


def test_short_token_lists_key_only_their_full_blocks() -> None:
    index = KVBlockIndex()
    assert _store(index, A, _ids(6), [1, 2]) == 1  # tokens for one block and a half
    assert index.blocks(A) == 1


@pytest.mark.parametrize(("tokens", "expected"), [
    pytest.param(_ids(3), 0, id="shorter-than-a-block"),
    pytest.param(_ids(9), 2, id="partial-last-block"),
    pytest.param([-1, 2, 3, 4], 0, id="negative-id"),
    pytest.param([2**32, 2, 3, 4], 0, id="id-out-of-range"),
])
def test_block_keys(tokens: list[int], expected: int) -> None:
    assert len(block_keys(tokens, BS, root_key(None))) == expected


def test_block_keys_chain_and_cap() -> None:
    keys = block_keys(_ids(16), BS, root_key(None))
    assert block_keys(_ids(16), BS, root_key(None), max_blocks=2) == keys[:2]
    assert block_keys(_ids(8, start=108), BS, keys[1]) == keys[2:]
    assert block_keys(_ids(16), BS, root_key("x")) != keys


def test_usable_follows_trust() -> None:
    index = KVBlockIndex()
    assert not index.usable(A, 10.0)
    index.trust_from(A, 5.0)
    assert not index.usable(A, 4.9) and index.usable(A, 5.0)
    index.distrust(A)
    assert not index.usable(A, 100.0)


def test_usable_set_follows_trust_and_holds() -> None:
    index = KVBlockIndex()
    assert index.usable_set(1.0) == frozenset()
    index.trust_from(A, 0.0)
    index.trust_from(B, 5.0)
    assert index.usable_set(1.0) == {A}
    assert index.usable_set(4.9) == {A}  # from the cache, still right
    assert index.usable_set(5.0) == {A, B}  # the hold ended: recomputed
    assert index.usable_set(2.0) == {A}  # an earlier time is answered right too
    index.distrust(A)
    assert index.usable_set(6.0) == {B}
    index.retain([A])
    assert index.usable_set(6.0) == frozenset()


def test_block_sizes_seen() -> None:
    index = KVBlockIndex()
    _store(index, A, _ids(8), [1, 2])
    index.apply(B, [BlockStored([9], None, _ids(16), 16)])
    assert index.block_sizes == {4, 16} and index.last_block_size == 16

from __future__ import annotations

import pytest

from poolgate.scheduling.prefix.hashing import block_hashes, prefix_text
from poolgate.scheduling.prefix.index import PrefixIndex
from poolgate.scheduling.scorers.prefix_cache import Params, PrefixCacheScorer

from .builders import cycle, ep, req

SYSTEM = "S" * 64 + "T" * 64  # two full blocks at block size 64


def test_block_hashes_are_chained() -> None:
    a = block_hashes("m", "x" * 64 + "y" * 64 + "z" * 64, 64, 100)
    b = block_hashes("m", "x" * 64 + "q" * 64 + "z" * 64, 64, 100)
    assert len(a) == 3
    assert a[0] == b[0]
    # The third block's text is equal, but its hash covers everything before it.
    assert a[1] != b[1]
    assert a[2] != b[2]


def test_block_hashes_only_full_blocks_and_cap() -> None:
    assert block_hashes("m", "x" * 63, 64, 100) == []
    assert len(block_hashes("m", "x" * 200, 64, 100)) == 3
    assert len(block_hashes("m", "x" * 6400, 64, 10)) == 10
    with pytest.raises(ValueError, match="block_size"):
        block_hashes("m", "x", 0, 1)


def test_block_hashes_are_seeded_with_the_model() -> None:
    text = "x" * 128
    assert block_hashes("llama", text, 64, 10) != block_hashes("sql-lora", text, 64, 10)
    assert block_hashes("llama", text, 64, 10) == block_hashes("llama", text, 64, 10)


def test_prefix_text_of_chat_includes_roles_in_order() -> None:
    as_user = req(messages=[{"role": "user", "content": "hello"}])
    as_system = req(messages=[{"role": "system", "content": "hello"}])
    assert prefix_text(as_user) != prefix_text(as_system)
    two = req(messages=[{"role": "system", "content": "a"}, {"role": "user", "content": "b"}])
    assert prefix_text(two).index("a") < prefix_text(two).index("b")


def test_prefix_text_of_content_parts_and_prompt() -> None:
    parts = req(messages=[{"role": "user", "content": [
        {"type": "text", "text": "describe"},
        {"type": "image_url", "image_url": {"url": "http://x/cat.png"}},
    ]}])
    text = prefix_text(parts)
    assert "describe" in text
    assert "cat.png" in text
    assert prefix_text(req(prompt="once upon")) == "once upon"
    assert prefix_text(req()) == ""


def test_chat_turns_share_a_prefix() -> None:
    first = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "q" * 200}]
    second = [*first, {"role": "assistant", "content": "a" * 100},
              {"role": "user", "content": "r" * 100}]
    h1 = block_hashes("m", prefix_text(req(messages=first)), 64, 100)
    h2 = block_hashes("m", prefix_text(req(messages=second)), 64, 100)
    assert h2[: len(h1)] == h1


def test_index_match_lengths_are_leading_runs() -> None:
    index = PrefixIndex()
    index.add("a:1", [1, 2, 3, 4])
    index.add("b:1", [1, 2])
    index.add("c:1", [2, 3, 4])  # no head block: matches nothing
    assert index.match_lengths([1, 2, 3, 4, 5], {"a:1", "b:1", "c:1"}) == {"a:1": 4, "b:1": 2}
    assert index.match_lengths([1, 2, 3], {"b:1"}) == {"b:1": 2}
    assert index.match_lengths([9, 1], {"a:1"}) == {}
    assert index.match_lengths([], {"a:1"}) == {}


def test_index_per_endpoint_bound_evicts_chain_tails_first() -> None:
    index = PrefixIndex(max_blocks_per_endpoint=3, max_blocks_total=100)
    index.add("a:1", [1, 2, 3])
    index.add("a:1", [7, 8])
    assert index.blocks("a:1") == 3
    # The newest chain is intact; of the old chain only its head survives.
    assert index.match_lengths([7, 8], {"a:1"}) == {"a:1": 2}
    assert index.match_lengths([1, 2, 3], {"a:1"}) == {"a:1": 1}


def test_index_reuse_refreshes_recency() -> None:
    index = PrefixIndex(max_blocks_per_endpoint=4, max_blocks_total=100)
    index.add("a:1", [1, 2])
    index.add("a:1", [5, 6])
    index.add("a:1", [1, 2])  # used again: now the newest
    index.add("a:1", [8, 9])
    assert index.match_lengths([1, 2], {"a:1"}) == {"a:1": 2}
    assert index.match_lengths([5, 6], {"a:1"}) == {}


def test_index_total_bound_is_global_lru() -> None:
    index = PrefixIndex(max_blocks_per_endpoint=100, max_blocks_total=4)
    index.add("a:1", [1, 2])
    index.add("b:1", [3, 4])
    index.add("c:1", [5, 6])
    assert len(index) == 4
    assert index.blocks("a:1") == 0
    assert index.match_lengths([3, 4], {"b:1"}) == {"b:1": 2}
    assert index.match_lengths([5, 6], {"c:1"}) == {"c:1": 2}


def test_index_memory_stays_bounded_under_many_requests() -> None:
    index = PrefixIndex(max_blocks_per_endpoint=50, max_blocks_total=120)
    for i in range(2000):
        index.add(f"e{i % 5}:1", [i * 10 + k for k in range(8)])
    assert len(index) <= 120
    assert all(index.blocks(f"e{j}:1") <= 50 for j in range(5))
    assert "hashes=120" in repr(index)


def test_index_remove_and_retain() -> None:
    index = PrefixIndex()
    index.add("a:1", [1, 2])
    index.add("b:1", [1, 2])
    index.retain(["b:1"])
    assert index.match_lengths([1, 2], {"a:1", "b:1"}) == {"b:1": 2}
    index.remove_endpoint("b:1")
    index.remove_endpoint("never:1")
    assert len(index) == 0


def test_index_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="positive"):
        PrefixIndex(max_blocks_per_endpoint=0)


def _scorer(**params: object) -> PrefixCacheScorer:
    return PrefixCacheScorer(params=Params.model_validate({"blockSize": 4, **params}))


def test_prefix_scorer_scores_fraction_of_leading_blocks() -> None:
    scorer = _scorer()
    scorer.on_picked(req(prompt="aaaabbbbcccc"), "a:1")
    scorer.on_picked(req(prompt="aaaaxxxx"), "b:1")
    eps = [ep("a:1"), ep("b:1"), ep("c:1")]
    scores = scorer.score(req(prompt="aaaabbbbddddeeee"), eps, cycle())
    assert scores == pytest.approx({"a:1": 2 / 4, "b:1": 1 / 4})


def test_prefix_scorer_separates_models() -> None:
    scorer = _scorer()
    scorer.on_picked(req("llama", prompt="aaaabbbb"), "a:1")
    assert scorer.score(req("sql-lora", prompt="aaaabbbb"), [ep("a:1")], cycle()) == {}


def test_prefix_scorer_short_prompt_scores_nothing() -> None:
    scorer = _scorer()
    scorer.on_picked(req(prompt="abc"), "a:1")
    assert scorer.score(req(prompt="abc"), [ep("a:1")], cycle()) == {}
    assert len(scorer.index) == 0


def test_prefix_scorer_memoises_hashes_on_the_request() -> None:
    scorer = _scorer()
    r = req(prompt="aaaabbbb")
    first = scorer.hashes(r)
    r.prompt_text = "zzzzzzzz"  # not re-read: the memo is per request
    assert scorer.hashes(r) is first


@pytest.mark.parametrize(("hot_queue", "hot_in_flight", "cold_queue", "keeps_affinity"), [
    pytest.param(3, 1, 0, True, id="within-abs-bound"),
    pytest.param(4, 1, 0, False, id="beyond-abs-bound"),
    pytest.param(20, 4, 16, True, id="within-rel-bound"),
    pytest.param(20, 5, 16, False, id="beyond-rel-bound"),
])
def test_prefix_scorer_load_bound(hot_queue: int, hot_in_flight: int, cold_queue: int,
                                  keeps_affinity: bool) -> None:
    # bound = max(4, 0.5 × min_load): 4 at min_load 0, 8 at min_load 16.
    scorer = _scorer(loadBoundAbs=4, loadBoundRel=0.5)
    scorer.on_picked(req(prompt="aaaabbbb"), "hot:1")
    eps = [ep("hot:1", queue=hot_queue, in_flight=hot_in_flight), ep("cold:1", queue=cold_queue)]
    scores = scorer.score(req(prompt="aaaabbbb"), eps, cycle())
    assert scores == ({"hot:1": pytest.approx(1.0)} if keeps_affinity else {})


def test_prefix_scorer_without_bound_keeps_affinity_on_a_hot_endpoint() -> None:
    scorer = _scorer()
    scorer.on_picked(req(prompt="aaaabbbb"), "hot:1")
    eps = [ep("hot:1", queue=500), ep("cold:1")]
    assert scorer.score(req(prompt="aaaabbbb"), eps, cycle()) == {"hot:1": pytest.approx(1.0)}


def test_prefix_scorer_accepts_gie_parameter_names() -> None:
    params = Params.model_validate({"maxPrefixBlocksToMatch": 7, "lruCapacityPerServer": 99})
    assert (params.max_blocks, params.max_blocks_per_endpoint) == (7, 99)

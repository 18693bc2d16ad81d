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


@pytest.mark.parametrize(("hot_in_flight", "keeps_affinity"), [
    pytest.param(2, True, id="within-abs"),
    # 4 fleet: loads (5, 3, 3, 3): mean 3.5, mean limit 2 + 1.5 × 3.5 = 7.25; least-loaded
    # limit 3 + max(2, 1.5) = 5: within both.
    pytest.param(5, True, id="within-both"),
    # (6, 3, 3, 3): least-loaded limit 5 is exceeded.
    pytest.param(6, False, id="beyond-least-loaded"),
])
def test_prefix_scorer_mean_bound_on_gateway_in_flight(hot_in_flight: int,
                                                       keeps_affinity: bool) -> None:
    scorer = _scorer(loadBoundAbs=2, loadBoundRel=0.5, loadBoundMean=1.5, loadSignal="in-flight")
    scorer.on_picked(req(prompt="aaaabbbb"), "hot:1")
    eps = [ep("hot:1", queue=50, in_flight=hot_in_flight),
           *(ep(f"c{i}:1", in_flight=3) for i in range(3))]
    scores = scorer.score(req(prompt="aaaabbbb"), eps, cycle())
    # The scraped queue (50) is ignored: the gateway's in-flight count is the signal.
    assert scores == ({"hot:1": pytest.approx(1.0)} if keeps_affinity else {})


def test_prefix_scorer_mean_bound_stops_one_endpoint_running_ahead() -> None:
    scorer = _scorer(loadBoundAbs=2, loadBoundMean=1.5, loadSignal="in-flight")
    scorer.on_picked(req(prompt="aaaabbbb"), "a:1")
    scorer.on_picked(req(prompt="aaaabbbb"), "b:1")
    eps = [ep("a:1", in_flight=9), ep("b:1", in_flight=4),
           *(ep(f"c{i}:1", in_flight=2) for i in range(6))]
    # Loads (9, 4, 2 × 6): mean limit 2 + 1.5 × 25/8 = 6.69, least-loaded limit 2 + max(2, 1)
    # = 4: b:1 (4) keeps its affinity, a:1 (9) loses it.
    assert scorer.score(req(prompt="aaaabbbb"), eps, cycle()) == {"b:1": pytest.approx(1.0)}


@pytest.mark.parametrize(("hot_awaiting", "others_awaiting", "keeps_affinity"), [
    pytest.param(2, 0, True, id="within-bound"),
    pytest.param(3, 0, False, id="beyond-bound"),
    pytest.param(3, 3, True, id="no-candidate-less-busy"),
])
def test_prefix_scorer_prefill_bound(hot_awaiting: int, others_awaiting: int,
                                     keeps_affinity: bool) -> None:
    scorer = _scorer(prefillBound=2)
    scorer.on_picked(req(prompt="aaaabbbb"), "hot:1")
    scorer.on_picked(req(prompt="aaaabbbb"), "copy:1")
    eps = [ep("hot:1", in_flight=hot_awaiting, awaiting=hot_awaiting),
           ep("copy:1", in_flight=others_awaiting + 9, awaiting=others_awaiting),
           ep("cold:1", in_flight=others_awaiting, awaiting=others_awaiting)]
    scores = scorer.score(req(prompt="aaaabbbb"), eps, cycle())
    # The other holder of the prefix keeps its affinity either way.
    expected = {"hot:1": pytest.approx(1.0), "copy:1": pytest.approx(1.0)}
    if not keeps_affinity:
        del expected["hot:1"]
    assert scores == expected


def test_prefix_scorer_prefill_bound_is_off_by_default() -> None:
    scorer = _scorer()
    scorer.on_picked(req(prompt="aaaabbbb"), "hot:1")
    eps = [ep("hot:1", in_flight=50, awaiting=50), ep("cold:1")]
    assert scorer.score(req(prompt="aaaabbbb"), eps, cycle()) == {"hot:1": pytest.approx(1.0)}


def test_prefix_scorer_miss_spread_prefers_the_least_cached() -> None:
    scorer = _scorer(missSpread=0.5)
    scorer.on_picked(req(prompt="aaaabbbbcccc"), "a:1")
    scorer.on_picked(req(prompt="ddddeeee"), "b:1")
    eps = [ep("a:1"), ep("b:1"), ep("c:1")]
    # A prompt nobody holds: a:1 has 3 blocks, b:1 2, c:1 none.
    scores = scorer.score(req(prompt="zzzzyyyy"), eps, cycle())
    assert scores == {"a:1": 0.0, "b:1": pytest.approx(0.5 / 3), "c:1": pytest.approx(0.5)}
    # A prompt someone holds is scored by its match, not by occupancy.
    assert scorer.score(req(prompt="ddddeeee"), eps, cycle()) == {"b:1": pytest.approx(1.0)}
    # Off by default; and nothing to prefer when every endpoint holds as much.
    assert _scorer().score(req(prompt="zzzzyyyy"), eps, cycle()) == {}
    assert _scorer(missSpread=0.5).score(req(prompt="zzzzyyyy"), eps, cycle()) == {}


def test_index_match_lengths_agree_with_a_block_by_block_walk() -> None:
    # Chains share heads and diverge, under eviction pressure from both bounds; the bisection and
    # last-block shortcuts must give what checking every block one by one gives.
    import random

    from poolgate.scheduling.prefix.hashing import block_hashes

    rng = random.Random(5)
    index = PrefixIndex(max_blocks_per_endpoint=40, max_blocks_total=150)
    addresses = [f"e{i}:1" for i in range(6)]
    heads = ["".join(rng.choice("abc") for _ in range(rng.randrange(0, 6 * 4))) for _ in range(5)]
    for _ in range(400):
        text = rng.choice(heads) + "".join(rng.choice("xyz") for _ in range(rng.randrange(0, 40)))
        hashes = block_hashes("m", text, 4, 16)
        expected: dict[str, int] = {}
        for a in addresses:
            held = index._by_endpoint.get(a, {})
            k = 0
            while k < len(hashes) and hashes[k] in held:
                k += 1
            if k:
                expected[a] = k
        assert index.match_lengths(hashes, set(addresses)) == expected
        if hashes:
            index.add(rng.choice(addresses), hashes)

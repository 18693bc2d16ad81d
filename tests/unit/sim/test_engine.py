"""The engine model: batching, queueing, prefix caching, eviction, preemption, LoRA, aborts."""

from __future__ import annotations

import pytest

from poolgate.sim.engine import QueueFull
from poolgate.sim.tokens import TextGenerator
from tests.unit.sim._engine_builders import PROFILE, Clock, make_engine, make_request


def test_repeated_prompt_hits_full_blocks_capped_at_n_minus_one() -> None:
    """16 tokens in blocks of 4: the repeat reuses 3 blocks, so at least 1 token is computed."""
    e = make_engine()
    clock = Clock(e)
    e.add(make_request("a", 16), clock.now)
    clock.run()
    e.add(make_request("b", 16), clock.now)
    outs = clock.run()
    assert outs["b"][0].cached_tokens == 12
    assert e.counters.prefix_cache_queries == 32
    assert e.counters.prefix_cache_hits == 12


def test_partial_last_block_is_never_a_hit() -> None:
    e = make_engine()
    clock = Clock(e)
    e.add(make_request("a", 18), clock.now)
    clock.run()
    e.add(make_request("b", 18), clock.now)
    assert clock.run()["b"][0].cached_tokens == 16


def test_generated_tokens_become_hittable_prefix() -> None:
    """A follow-up that repeats prompt + answer hits blocks filled during decode."""
    e = make_engine()
    clock = Clock(e)
    e.add(make_request("a", 8, max_tokens=8), clock.now)
    clock.run()
    gen = TextGenerator(7)  # the request's sampling seed: same tokens as "a" generated
    answer = [gen.next_token().token_id for _ in range(8)]
    e.add(make_request("b", list(range(100, 108)) + answer + [5, 6, 7, 8]), clock.now)
    # The last generated token never had its KV computed: 8 + 7 tokens -> 3 full blocks.
    assert clock.run()["b"][0].cached_tokens == 12


@pytest.mark.parametrize(("first", "second", "hit"), [
    pytest.param(None, None, 12, id="base-base"),
    pytest.param("sql", "sql", 12, id="same-adapter"),
    pytest.param(None, "sql", 0, id="base-then-adapter"),
    pytest.param("sql", "tweet", 0, id="two-adapters"),
])
def test_prefix_cache_is_isolated_per_adapter(first: str | None, second: str | None,
                                              hit: int) -> None:
    e = make_engine(max_loras=2)
    clock = Clock(e)
    e.add(make_request("a", 16, adapter=first), clock.now)
    clock.run()
    e.add(make_request("b", 16, adapter=second), clock.now)
    assert clock.run()["b"][0].cached_tokens == hit


def test_unreferenced_blocks_are_evicted_lru_under_pressure() -> None:
    e = make_engine(blocks=8, block_size=4)
    clock = Clock(e)
    e.add(make_request("a", 16, max_tokens=1), clock.now)
    clock.run()
    e.add(make_request("b", list(range(500, 532)), max_tokens=1), clock.now)  # all 8 blocks
    clock.run()
    e.add(make_request("c", 16, max_tokens=1), clock.now)
    assert clock.run()["c"][0].cached_tokens == 0


def test_eviction_takes_a_sequence_tail_first_so_its_prefix_survives() -> None:
    e = make_engine(blocks=8, block_size=4)
    clock = Clock(e)
    e.add(make_request("a", 16, max_tokens=1), clock.now)
    clock.run()
    e.add(make_request("b", list(range(500, 528)), max_tokens=1), clock.now)  # 7 of 8 blocks
    clock.run()
    e.add(make_request("c", 16, max_tokens=1), clock.now)
    assert clock.run()["c"][0].cached_tokens == 4


def test_held_blocks_are_not_evicted_and_admission_waits_for_space() -> None:
    e = make_engine(blocks=6, block_size=4)
    clock = Clock(e)
    e.add(make_request("a", 16, max_tokens=3), clock.now)  # 4 blocks + growth
    e.add(make_request("b", 12, max_tokens=1), clock.now)  # 3 blocks: does not fit next to a
    clock.step()
    assert e.running_ids() == ["a"]
    assert e.waiting_ids() == ["b"]
    outs = clock.run()
    assert outs["b"][-1].finished is not None
    assert e.kv.usage == 0.0


def test_batch_slots_and_fcfs_queue_order() -> None:
    e = make_engine(seqs=2)
    clock = Clock(e)
    for rid, n in (("r0", 2), ("r1", 4), ("r2", 2)):
        e.add(make_request(rid, 8, max_tokens=n), clock.now)
    clock.step()
    assert e.running_ids() == ["r0", "r1"]
    assert e.waiting_ids() == ["r2"]
    clock.step()  # r0 finishes with its second token
    clock.step()
    assert e.running_ids() == ["r1", "r2"]


def test_queue_limit_rejects_and_counts() -> None:
    e = make_engine(max_waiting=1)
    e.add(make_request("a"), 0.0)
    with pytest.raises(QueueFull):
        e.add(make_request("b"), 0.0)
    assert e.counters.rejections == 1


def test_step_time_grows_with_batch_and_uncached_prompt() -> None:
    e = make_engine(seqs=8, blocks=256)
    clock = Clock(e)
    e.add(make_request("solo", 8, max_tokens=3), clock.now)
    clock.run()
    solo_decode = clock.durations[1]
    for i in range(6):
        e.add(make_request(f"r{i}", [900 + i] * 8, max_tokens=3), clock.now)
    clock.durations.clear()
    clock.run()
    assert clock.durations[1] > solo_decode
    assert clock.durations[1] == pytest.approx(PROFILE.step_base + PROFILE.step_per_seq * 6)
    # The prefill step pays for the 6 x 9 uncached prompt tokens (BOS-free ids here: 8 each).
    assert clock.durations[0] == pytest.approx(clock.durations[1] + PROFILE.prefill_per_token * 48)


def test_cached_prompt_prefills_faster() -> None:
    e = make_engine(blocks=256)
    clock = Clock(e)
    e.add(make_request("a", 64, max_tokens=1), clock.now)
    clock.run()
    e.add(make_request("b", 64, max_tokens=1), clock.now)
    clock.run()
    assert clock.durations[1] < clock.durations[0]


def test_ttft_includes_queueing() -> None:
    e = make_engine(seqs=1)
    clock = Clock(e)
    e.add(make_request("a", 8, max_tokens=4), clock.now)
    e.add(make_request("b", 8, max_tokens=4), clock.now)
    outs = clock.run()
    first_a, first_b = outs["a"][0], outs["b"][0]
    assert first_a.ttft is not None and first_b.ttft is not None
    assert first_b.ttft > first_a.ttft
    fb = outs["b"][-1].finished
    assert fb is not None and fb.queue_time > 0


def test_decode_without_space_preempts_newest_and_it_recovers() -> None:
    e = make_engine(seqs=4, blocks=4, block_size=4)
    clock = Clock(e)
    e.add(make_request("old", 7, max_tokens=6), clock.now)
    e.add(make_request("new", 7, max_tokens=6), clock.now)
    outs = clock.run()
    assert e.counters.preemptions >= 1
    assert outs["old"][-1].finished is not None
    assert outs["new"][-1].finished is not None
    assert outs["new"][-1].completion_tokens == 6


def test_lora_slot_waits_and_loaded_adapter_goes_first() -> None:
    e = make_engine(max_loras=1)
    clock = Clock(e)
    e.add(make_request("a1", 8, max_tokens=4, adapter="a"), clock.now)
    e.add(make_request("b1", 8, max_tokens=1, adapter="b"), clock.now)
    e.add(make_request("a2", 8, max_tokens=2, adapter="a"), clock.now)
    clock.step()
    assert e.running_ids() == ["a1", "a2"]
    assert e.waiting_ids() == ["b1"]
    assert e.waiting_adapters() == ["b"]
    assert clock.durations[0] >= PROFILE.lora_load
    clock.run()
    assert e.lora.resident == ["b"]  # a was idle, so it was swapped out for b
    # One load for a, one for b; later steps do not pay again.
    assert sum(1 for d in clock.durations if d >= PROFILE.lora_load) == 2


def test_abort_frees_slot_and_kv_at_once() -> None:
    e = make_engine(seqs=1)
    clock = Clock(e)
    e.add(make_request("a", 16, max_tokens=50), clock.now)
    e.add(make_request("b", 8, max_tokens=2), clock.now)
    clock.step()
    assert e.num_running == 1 and e.kv.usage > 0
    d = e.begin_step(clock.now)
    assert d is not None
    assert e.abort("a")
    assert e.num_running == 0 and e.kv.usage == 0.0
    assert [o.request_id for o in e.end_step(clock.now + d)] == []  # a's token is dropped
    assert clock.run()["b"][-1].finished is not None
    assert not e.abort("a")


def test_abort_of_waiting_request() -> None:
    e = make_engine(seqs=1)
    e.add(make_request("a"), 0.0)
    e.add(make_request("b"), 0.0)
    e.begin_step(0.0)
    assert e.abort("b")
    assert e.num_waiting == 0


def test_stop_string_ends_with_stop_reason() -> None:
    first = TextGenerator(7)
    words = [first.next_token().text for _ in range(3)]
    e = make_engine()
    clock = Clock(e)
    e.add(make_request("a", 8, max_tokens=10, stop=(words[2],)), clock.now)
    outs = clock.run()["a"]
    f = outs[-1].finished
    assert f is not None and f.finish_reason == "stop" and f.stop_reason == words[2]
    assert "".join(o.delta for o in outs) == words[0] + words[1]


def test_length_limit() -> None:
    e = make_engine()
    clock = Clock(e)
    e.add(make_request("a", 8, max_tokens=3), clock.now)
    outs = clock.run()["a"]
    assert [o.completion_tokens for o in outs] == [1, 2, 3]
    f = outs[-1].finished
    assert f is not None and f.finish_reason == "length" and f.completion_tokens == 3


def test_eos_only_without_client_limit_and_not_with_ignore_eos() -> None:
    e = make_engine(blocks=512)
    clock = Clock(e)
    e.add(make_request("free", 8, max_tokens=1000, eos_enabled=True), clock.now)
    e.add(make_request("ignore", 8, max_tokens=100, eos_enabled=True, ignore_eos=True), clock.now)
    outs = clock.run()
    free = outs["free"][-1].finished
    ignore = outs["ignore"][-1].finished
    assert free is not None and free.finish_reason == "stop" and free.completion_tokens < 1000
    assert ignore is not None and ignore.finish_reason == "length"


def test_same_seed_same_text() -> None:
    texts = []
    for _ in range(2):
        e = make_engine()
        clock = Clock(e)
        e.add(make_request("a", 8, max_tokens=6), clock.now)
        texts.append("".join(o.delta for o in clock.run()["a"]))
    assert texts[0] == texts[1] and texts[0]

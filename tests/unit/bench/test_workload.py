from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from poolgate.bench.config import BenchConfig, LoadConfig, WorkloadConfig, parse_model_mix
from poolgate.bench.errors import BenchError
from poolgate.bench.lengths import LengthSpec
from poolgate.bench.workload import Workload


def config(**workload: Any) -> BenchConfig:
    defaults: dict[str, Any] = {"model": "m", "seed": 42}
    defaults.update(workload)
    return BenchConfig(workload=WorkloadConfig(**defaults), load=LoadConfig(rate=1, requests=1))


def shared(groups: int = 3, ppg: int = 4, sys_len: int = 100, q: str = "10") -> BenchConfig:
    return config(groups=groups, prompts_per_group=ppg, system_prompt_len=sys_len,
                  question_len=LengthSpec.parse(q), output_len=LengthSpec.parse("7"))


def test_same_seed_gives_byte_identical_requests() -> None:
    a = Workload(shared()).requests(50)
    b = Workload(shared()).requests(50)
    assert [r.body for r in a] == [r.body for r in b]
    c = Workload(config(seed=43, groups=3, prompts_per_group=4, system_prompt_len=100)).requests(50)
    assert [r.body for r in a] != [r.body for r in c]


def test_request_i_does_not_depend_on_what_was_generated_before() -> None:
    wl = Workload(shared())
    assert wl.request(17).body == Workload(shared()).requests(18)[17].body


def test_shared_prefix_requests_share_exactly_their_groups_system_prompt() -> None:
    wl = Workload(shared())
    systems = wl.system_prompts
    assert len(systems) == 3 and len(set(systems)) == 3
    assert all(len(s) == 100 * 4 for s in systems)
    # Groups differ from the very start, so no two groups share a cached prefix.
    assert len({s[:16] for s in systems}) == 3
    seen: Counter[tuple[int, int]] = Counter()
    for req in wl.requests(300):
        body = orjson.loads(req.body)
        system, user = body["messages"]
        assert req.group is not None and req.prompt is not None
        assert system == {"role": "system", "content": systems[req.group]}
        assert len(user["content"]) == 10 * 4
        assert body["max_tokens"] == 7 and req.output_len == 7
        assert req.prompt_len == 110
        seen[(req.group, req.prompt)] += 1
    # Random picks cover every (group, prompt) pair of a 3x4 pool in 300 draws.
    assert len(seen) == 12


def test_shared_prefix_questions_are_fixed_per_group_and_prompt() -> None:
    wl = Workload(shared())
    by_pair: dict[tuple[int | None, int | None], str] = {}
    for req in wl.requests(200):
        user = orjson.loads(req.body)["messages"][1]["content"]
        assert by_pair.setdefault((req.group, req.prompt), user) == user


def test_completions_api_puts_prefix_first_in_the_prompt() -> None:
    cfg = BenchConfig(workload=shared().workload, load=LoadConfig(rate=1, requests=1), api="completions")
    wl = Workload(cfg)
    req = wl.request(0)
    body = orjson.loads(req.body)
    assert req.group is not None
    assert body["prompt"].startswith(wl.system_prompts[req.group] + "\n")
    assert "messages" not in body


def test_random_workload_lengths_follow_the_specs() -> None:
    cfg = config(kind="random", input_len=LengthSpec.parse("20:40"), output_len=LengthSpec.parse("5:9"))
    reqs = Workload(cfg).requests(200)
    in_lens = {len(orjson.loads(r.body)["messages"][0]["content"]) // 4 for r in reqs}
    out_lens = {orjson.loads(r.body)["max_tokens"] for r in reqs}
    assert min(in_lens) >= 20 and max(in_lens) <= 40 and len(in_lens) > 10
    assert out_lens == set(range(5, 10))
    assert all(r.group is None for r in reqs)


def test_streaming_body_asks_for_usage_and_ignore_eos() -> None:
    body = orjson.loads(Workload(config(kind="random")).request(0).body)
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["ignore_eos"] is True
    assert body["model"] == "m"


def test_non_streaming_body_and_extra_body() -> None:
    cfg = BenchConfig(
        workload=WorkloadConfig(kind="random", model="m"), load=LoadConfig(rate=1, requests=1),
        stream=False, ignore_eos=False, extra_body={"temperature": 0},
    )
    body = orjson.loads(Workload(cfg).request(0).body)
    assert "stream" not in body and "stream_options" not in body and "ignore_eos" not in body
    assert body["temperature"] == 0


def test_lora_mix_follows_the_weights() -> None:
    cfg = config(kind="lora-mix", model=None, models=parse_model_mix("base=0.5,sql-lora=0.3,x=0.2"))
    counts = Counter(r.model for r in Workload(cfg).requests(4000))
    assert set(counts) == {"base", "sql-lora", "x"}
    assert 0.45 < counts["base"] / 4000 < 0.55
    assert 0.25 < counts["sql-lora"] / 4000 < 0.35
    assert all(orjson.loads(r.body)["model"] == r.model for r in Workload(cfg).requests(20))


def test_warmup_requests_come_from_another_stream() -> None:
    wl = Workload(config(kind="random"))
    assert wl.request(0, warmup=True).body != wl.request(0).body


def test_no_model_is_a_clear_error() -> None:
    with pytest.raises(BenchError, match="--model"):
        Workload(config(model=None))


def test_group_zipf_skews_group_popularity_and_zero_keeps_the_uniform_sequence() -> None:
    uniform = Workload(shared(groups=16)).requests(200)
    explicit = Workload(config(groups=16, prompts_per_group=4, system_prompt_len=100,
                               question_len=LengthSpec.parse("10"),
                               output_len=LengthSpec.parse("7"), group_zipf=0.0)).requests(200)
    assert [r.body for r in uniform] == [r.body for r in explicit]
    skewed = Workload(config(groups=16, prompts_per_group=4, system_prompt_len=100,
                             group_zipf=0.85)).requests(4000)
    counts = Counter(r.group for r in skewed)
    # 1 / H(16, 0.85) = 0.247: about a quarter to group 0, then falling with the rank.
    assert 0.22 < counts[0] / 4000 < 0.28
    assert counts[0] > counts[1] > counts[3] > counts[15] > 0
    again = Workload(config(groups=16, prompts_per_group=4, system_prompt_len=100,
                            group_zipf=0.85)).requests(50)
    assert [r.body for r in again] == [r.body for r in skewed[:50]]


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_group_zipf_must_be_finite_and_not_negative(bad: float) -> None:
    with pytest.raises(BenchError, match="--group-zipf"):
        config(groups=4, group_zipf=bad)

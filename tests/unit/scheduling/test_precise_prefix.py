"""`precise-prefix-cache-scorer` as plain data: events in an index, requests tokenized, scores."""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

import pytest

from poolgate.core.kv_events import BlockStored
from poolgate.core.sim_tokens import encode
from poolgate.datalayer.kv_events import KVEventsHub, KVEventsSource
from poolgate.datalayer.kv_index import KVBlockIndex
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_profile, build_scheduler
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.interfaces import BuildContext, LLMRequest, UsesKVEvents
from poolgate.scheduling.scorers.precise_prefix_cache import (
    Params,
    PrecisePrefixCacheScorer,
    create,
)
from tests.unit.scheduling.builders import NOW, cycle, ep

A, B, C = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000"
BS = 4
PROMPT = "the quick brown fox jumps over the lazy dog " * 4  # 44 tokens: 11 blocks of 4


def _scorer(**params: Any) -> PrecisePrefixCacheScorer:
    p = Params.model_validate({"tokenProcessorConfig": {"blockSize": BS}, **params})
    scorer = create("precise", p, BuildContext(random.Random(1)))
    assert isinstance(scorer, PrecisePrefixCacheScorer)
    return scorer


def _req(prompt: str = PROMPT, lora: str | None = None) -> LLMRequest:
    body = {"model": "m", "prompt": prompt}
    return LLMRequest(model="m", lora=lora, prompt_text=prompt, body=body)


def _served(index: KVBlockIndex, address: str, prompt: str, blocks: int | None = None,
            lora: str | None = None, block_size: int = BS) -> None:
    """`address`'s server stored the first `blocks` blocks of `prompt` (engine hashes its own)."""
    ids = encode(prompt)
    n = len(ids) // block_size if blocks is None else blocks
    base = hash(address) & 0xFFFF
    index.apply(address, [BlockStored([base * 1000 + i for i in range(n)], None,
                                      ids[: n * block_size], block_size, None, "GPU", lora)])
    index.trust_from(address, 0.0)


def test_score_is_leading_blocks_held_over_prompt_blocks() -> None:
    scorer = _scorer()
    total = len(encode(PROMPT)) // BS
    _served(scorer.index, A, PROMPT)
    _served(scorer.index, B, PROMPT, blocks=3)
    scores = scorer.score(_req(), [ep(A), ep(B), ep(C)], cycle())
    assert scores == pytest.approx({A: 1.0, B: 3 / total})
    # Another prompt sharing only the first block (BOS and the first 12 characters).
    other = PROMPT[:12] + "something else entirely, and longer than a block or two"
    assert set(scorer.score(_req(other), [ep(A), ep(B)], cycle())) == {A, B}


def test_blocks_cached_without_this_gateway_count() -> None:
    # No on_picked at all: the index knows only what the events said.
    scorer = _scorer()
    _served(scorer.index, B, PROMPT)
    assert scorer.score(_req(), [ep(A), ep(B)], cycle()) == pytest.approx({B: 1.0})


def test_a_prompt_shorter_than_a_block_or_unrenderable_scores_nothing() -> None:
    scorer = _scorer()
    _served(scorer.index, A, PROMPT)
    assert scorer.score(_req("hi"), [ep(A)], cycle()) == {}
    req = LLMRequest(model="m", body={"prompt": ["two", "prompts"]})
    assert scorer.score(req, [ep(A)], cycle()) == {}
    assert scorer.score(LLMRequest(model="m"), [ep(A)], cycle()) == {}


def test_adapters_match_only_their_own_blocks() -> None:
    scorer = _scorer()
    _served(scorer.index, A, PROMPT, lora="sql-lora")
    _served(scorer.index, B, PROMPT)
    assert set(scorer.score(_req(lora="sql-lora"), [ep(A), ep(B)], cycle())) == {A}
    assert set(scorer.score(_req(), [ep(A), ep(B)], cycle())) == {B}


def test_untrusted_endpoints_fall_back_to_what_this_gateway_sent() -> None:
    scorer = _scorer()
    _served(scorer.index, A, PROMPT)
    scorer.index.distrust(A)  # events lost: entries not used until trusted again
    scorer.on_picked(_req(), B)  # B: no events at all yet (waiting)
    scores = scorer.score(_req(), [ep(A), ep(B)], cycle())
    assert scores == pytest.approx({B: 1.0})
    scorer.index.trust_from(A, NOW + 5)  # degraded: trusted after a hold
    assert set(scorer.score(_req(), [ep(A), ep(B)], cycle(NOW))) == {B}
    assert set(scorer.score(_req(), [ep(A), ep(B)], cycle(NOW + 5))) == {A, B}


def test_a_trusted_endpoint_is_scored_by_its_events_not_by_what_was_sent() -> None:
    scorer = _scorer()
    scorer.index.trust_from(A, 0.0)  # A's events say it holds nothing (say, all evicted)
    scorer.on_picked(_req(), A)
    assert scorer.score(_req(), [ep(A)], cycle()) == {}


def test_block_size_is_learnt_from_events_or_must_match(caplog: pytest.LogCaptureFixture) -> None:
    learnt = _scorer(tokenProcessorConfig={})
    assert learnt.current_block_size() == 16
    _served(learnt.index, A, PROMPT, block_size=8)
    assert learnt.current_block_size() == 8
    assert learnt.score(_req(), [ep(A)], cycle()) == pytest.approx({A: 1.0})
    fixed = _scorer()
    _served(fixed.index, A, PROMPT, block_size=8)
    with caplog.at_level(logging.WARNING):
        assert fixed.score(_req(), [ep(A)], cycle()) == {}
        fixed.score(_req(), [ep(A)], cycle())
    warnings = [r for r in caplog.records if "blockSize is 4" in r.getMessage()]
    assert len(warnings) == 1  # once per endpoint


def test_the_load_bound_applies() -> None:
    scorer = _scorer(loadBoundAbs=2, loadSignal="in-flight")
    _served(scorer.index, A, PROMPT)
    _served(scorer.index, B, PROMPT)
    scores = scorer.score(_req(), [ep(A, in_flight=9), ep(B, in_flight=1), ep(C)], cycle())
    assert scores == pytest.approx({B: 1.0})


def test_memoised_per_request() -> None:
    calls: list[object] = []
    scorer = _scorer()
    inner = scorer.tokenizer

    class Counting:
        name = "counting"

        def token_ids(self, body: Any) -> list[int] | None:
            calls.append(body)
            return inner.token_ids(body)

    scorer.tokenizer = Counting()
    req = _req()
    scorer.score(req, [ep(A)], cycle())
    scorer.on_picked(req, A)
    scorer.score(req, [ep(A)], cycle())
    assert len(calls) == 1


# -- parameters ------------------------------------------------------------------------------

def test_parameters_read_like_llm_ds() -> None:
    p = Params.model_validate({
        "tokenProcessorConfig": {"blockSize": 32},
        "kvEventsConfig": {"topicFilter": "kv@", "discoverPods": True,
                           "podDiscoveryConfig": {"socketPort": 6000, "replayPort": 6001},
                           "endpoints": {"127.0.0.1:8001": "tcp://127.0.0.1:7001"},
                           "holdSeconds": 2, "replayTimeoutSeconds": 0.5},
        "tokenizer": "simulator", "maxBlocks": 64, "maxBlocksPerEndpoint": 1000,
        "loadBoundAbs": 12})
    source = p.source()
    assert source == KVEventsSource(6000, 6001, (("127.0.0.1:8001", "tcp://127.0.0.1:7001"),),
                                    (), "kv@", 2.0, 0.5, 1000)
    assert source.publisher("10.1.2.3:8000") == "tcp://10.1.2.3:6000"
    assert source.publisher("127.0.0.1:8001") == "tcp://127.0.0.1:7001"


@pytest.mark.parametrize(("params", "message"), [
    pytest.param({"kvEventsConfig": {"discoverPods": False}}, "discoverPods: false", id="bind"),
    pytest.param({"kvEventsConfig": {"zmqEndpoint": "tcp://*:5557"}},
                 "kvEventsConfig.zmqEndpoint: unknown field", id="zmq-endpoint"),
    pytest.param({"kvEventsConfig": {"endpoints": {"nope": "tcp://x:1"}}},
                 "'nope' is not an endpoint host:port", id="bad-endpoint"),
    pytest.param({"kvEventsConfig": {"replayEndpoints": {"a:1": "http://x:1"}}},
                 "is not a tcp:// or ipc:// address", id="bad-url"),
    pytest.param({"kvEventsConfig": {"podDiscoveryConfig": {"socketPort": 0}}},
                 "socketPort", id="port"),
    pytest.param({"tokenProcessorConfig": {"blockSize": 0}}, "blockSize", id="block-size"),
    pytest.param({"tokenizer": "/no/such/dir"}, "tokenizer: /no/such/dir is not a directory",
                 id="tokenizer"),
])
def test_bad_parameters_are_refused_at_load(params: dict[str, Any], message: str) -> None:
    config = SchedulerConfig.from_dict({"profile": "p", "plugins": [
        {"type": "precise-prefix-cache-scorer", "params": params}]})
    with pytest.raises(SchedulerConfigError, match=message.replace("(", r"\(")):
        build_scheduler(config, EndpointStore())


def test_a_tokenizer_directory_loads(tmp_path: Path) -> None:
    from tests.support.hf_tokenizer import build_tokenizer_dir
    directory = build_tokenizer_dir(tmp_path / "tok")
    scorer = _scorer(tokenizer=str(directory))
    assert scorer.token_ids(_req("the quick brown fox")) is not None


def test_the_gateways_hub_gives_one_index_per_source() -> None:
    hub = KVEventsHub()
    plugin = {"type": "precise-prefix-cache-scorer",
              "params": {"kvEventsConfig": {"podDiscoveryConfig": {"socketPort": 6000}}}}
    config = SchedulerConfig.from_dict({"profile": "p", "plugins": [plugin]})
    first = build_profile(config, kv_events=hub).scorers[0].scorer
    second = build_profile(config, kv_events=hub).scorers[0].scorer
    assert isinstance(first, UsesKVEvents) and isinstance(second, PrecisePrefixCacheScorer)
    assert isinstance(first, PrecisePrefixCacheScorer)
    assert first.index is second.index
    assert first.kv_events_source.socket_port == 6000
    other = build_profile(SchedulerConfig.from_dict({"profile": "p", "plugins": [
        {"type": "precise-prefix-cache-scorer"}]}), kv_events=hub).scorers[0].scorer
    assert isinstance(other, PrecisePrefixCacheScorer) and other.index is not first.index

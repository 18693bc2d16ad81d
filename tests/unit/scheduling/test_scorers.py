from __future__ import annotations

import pytest

from poolgate.scheduling.interfaces import Category, Endpoint
from poolgate.scheduling.scorers.in_flight import InFlightScorer
from poolgate.scheduling.scorers.in_flight import Params as InFlightParams
from poolgate.scheduling.scorers.kv_cache_utilization import KvCacheUtilizationScorer
from poolgate.scheduling.scorers.lora_affinity import LoraAffinityScorer
from poolgate.scheduling.scorers.lora_affinity import Params as LoraParams
from poolgate.scheduling.scorers.queue_depth import QueueScorer

from .builders import cycle, ep, req


@pytest.mark.parametrize(("queues", "expected"), [
    pytest.param([0, 5, 10], [1.0, 0.5, 0.0], id="spread"),
    pytest.param([3, 3, 3], [1.0, 1.0, 1.0], id="all-equal"),
    pytest.param([2, 6], [1.0, 0.0], id="two"),
    pytest.param([7], [1.0], id="single"),
])
def test_queue_scorer(queues: list[int], expected: list[float]) -> None:
    eps = [ep(f"e{i}:1", queue=q) for i, q in enumerate(queues)]
    scores = QueueScorer().score(req(), eps, cycle())
    assert [scores[e.address] for e in eps] == pytest.approx(expected)


def test_queue_scorer_ignores_unknown_endpoints() -> None:
    eps = [ep("a:1", queue=4), ep("b:1", known=False), ep("c:1", queue=8)]
    scores = QueueScorer().score(req(), eps, cycle())
    assert scores == pytest.approx({"a:1": 1.0, "c:1": 0.0})
    assert QueueScorer().category is Category.DISTRIBUTION


@pytest.mark.parametrize(("kv", "expected"), [
    pytest.param(0.0, 1.0, id="empty"),
    pytest.param(0.3, 0.7, id="partial"),
    pytest.param(1.0, 0.0, id="full"),
])
def test_kv_cache_utilization_scorer(kv: float, expected: float) -> None:
    scores = KvCacheUtilizationScorer().score(req(), [ep("a:1", kv=kv)], cycle())
    assert scores["a:1"] == pytest.approx(expected)


def test_kv_cache_utilization_scorer_skips_unknown() -> None:
    assert KvCacheUtilizationScorer().score(req(), [ep("a:1", known=False)], cycle()) == {}


@pytest.mark.parametrize(("in_flight", "expected"), [
    pytest.param([0, 2, 4], [1.0, 0.5, 0.0], id="spread"),
    pytest.param([1, 1], [1.0, 1.0], id="equal"),
])
def test_in_flight_scorer(in_flight: list[int], expected: list[float]) -> None:
    # Works without model-server metrics.
    eps = [ep(f"e{i}:1", in_flight=f, known=False) for i, f in enumerate(in_flight)]
    scores = InFlightScorer().score(req(), eps, cycle())
    assert [scores[e.address] for e in eps] == pytest.approx(expected)


def test_in_flight_scorer_can_weigh_streams_awaiting_their_first_token() -> None:
    # Same in-flight count; b:1 has 2 streams still queued or prefilling.
    eps = [ep("a:1", in_flight=4), ep("b:1", in_flight=4, awaiting=2), ep("c:1", in_flight=6)]
    assert InFlightScorer().score(req(), eps, cycle()) == {"a:1": 1.0, "b:1": 1.0, "c:1": 0.0}
    weighted = InFlightScorer(params=InFlightParams(awaiting_weight=2.0)).score(req(), eps, cycle())
    # Loads 4, 8, 6.
    assert weighted == {"a:1": 1.0, "b:1": 0.0, "c:1": pytest.approx(0.5)}


LORA_FLEET: list[Endpoint] = [
    ep("active:1", loras={"sql"}, max_lora=2),
    ep("free:1", loras={"x"}, max_lora=2),
    ep("waiting:1", loras={"x"}, waiting_loras={"sql"}, max_lora=2),
    ep("full:1", loras={"x", "y"}, max_lora=2),
    ep("unknown:1", known=False),
    ep("nolora:1", max_lora=None),
]


def test_lora_affinity_scorer_table() -> None:
    scores = LoraAffinityScorer().score(req(lora="sql"), LORA_FLEET, cycle())
    assert scores == pytest.approx({"active:1": 1.0, "free:1": 0.8, "waiting:1": 0.6})


def test_lora_affinity_scorer_custom_scores() -> None:
    params = LoraParams.model_validate({"activeScore": 0.9, "freeSlotScore": 0.5,
                                        "waitingScore": 0.1})
    scores = LoraAffinityScorer(params=params).score(req(lora="sql"), LORA_FLEET, cycle())
    assert scores == pytest.approx({"active:1": 0.9, "free:1": 0.5, "waiting:1": 0.1})


def test_lora_affinity_scorer_is_neutral_for_base_model() -> None:
    assert LoraAffinityScorer().score(req(), LORA_FLEET, cycle()) == {}

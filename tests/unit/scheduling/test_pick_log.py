"""The scheduler's ring of recent picks and the explanation of each (`scheduling/pick_log.py`)."""

from __future__ import annotations

import pytest

from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_scheduler
from poolgate.scheduling.errors import NoEndpointAvailable
from poolgate.scheduling.interfaces import WeightedScorer
from poolgate.scheduling.pick_log import PickLog, PickRecord
from poolgate.scheduling.scheduler import Scheduler, SchedulerProfile

from .builders import NOW, FakePlugin, req

ADDRS = ["a:1", "b:1", "c:1"]


def _store() -> EndpointStore:
    store = EndpointStore()
    for address in ADDRS:
        store.update(address, Signals(waiting=0, running=0, kv_usage=0.1, scraped_at=NOW))
    return store


def test_the_ring_keeps_the_last_picks_newest_first_and_reuses_its_records() -> None:
    log = PickLog(3, scorers=0)
    records = []
    for i in range(5):
        log.slot.address = f"ep{i}"
        records.append(log.slot)
        log.commit()
    assert [r.address for r in log.recent()] == ["ep4", "ep3", "ep2"]
    assert [r.address for r in log.recent(2)] == ["ep4", "ep3"]
    assert log.count == 5
    assert records[3] is records[0]  # allocated once, overwritten in place


def test_an_empty_ring_has_no_picks_and_a_ring_holds_at_least_one() -> None:
    assert PickLog(4, scorers=1).recent() == []
    with pytest.raises(ValueError, match="at least one"):
        PickLog(0, scorers=1)


def _scheduler(*scorers: tuple[FakePlugin, float], picker: FakePlugin | None = None,
               keep: set[str] | None = None) -> Scheduler:
    filters = (FakePlugin("keep", keep=keep),) if keep is not None else ()
    profile = SchedulerProfile("t", filters, tuple(WeightedScorer(s, w) for s, w in scorers),
                               picker or FakePlugin("picker", choice="a:1"))
    return Scheduler(profile, _store(), pick_log_size=4)


@pytest.mark.parametrize(("scorers", "choice", "keep", "decided_by", "margin", "reason"), [
    pytest.param([("queue", 1.0, {"a:1": 1.0, "b:1": 0.5}), ("kv", 2.0, {"a:1": 1.0, "b:1": 0.0})],
                 "a:1", None, "fake-plugin/kv", 2.0, "highest weighted score",
                 id="the-scorer-with-the-widest-lead-over-the-runner-up"),
    pytest.param([("queue", 1.0, {"a:1": 1.0, "b:1": 1.0, "c:1": 1.0})], "b:1", None,
                 "fake-plugin/picker", 0.0, "tie broken by the picker", id="tie"),
    pytest.param([("queue", 1.0, {"a:1": 1.0, "b:1": 0.2})], "b:1", None,
                 "fake-plugin/picker", -0.8, "picker chose below the best score",
                 id="weighted-random-below-the-best"),
    pytest.param([], "c:1", None, "fake-plugin/picker", 0.0, "picker (no scorer ran)",
                 id="no-scorer"),
    pytest.param([("queue", 0.0, {"a:1": 1.0})], "c:1", None, "fake-plugin/picker", 0.0,
                 "picker (no scorer ran)", id="only-a-weight-0-scorer"),
    pytest.param([("queue", 1.0, {"a:1": 1.0})], "a:1", {"a:1"}, "-", 0.0, "only candidate",
                 id="one-candidate-after-filters"),
])
def test_explain_names_what_decided_the_pick(
        scorers: list[tuple[str, float, dict[str, float]]], choice: str, keep: set[str] | None,
        decided_by: str, margin: float, reason: str) -> None:
    scheduler = _scheduler(*((FakePlugin(name, scores=s), w) for name, w, s in scorers),
                           picker=FakePlugin("picker", choice=choice), keep=keep)
    result = scheduler.pick(req("llama"), ADDRS, NOW)
    [why] = scheduler.recent_picks()
    assert (why.endpoint, why.decided_by, why.reason) == (result.address, decided_by, reason)
    assert why.margin == pytest.approx(margin)
    assert (why.offered, why.candidates) == (3, 1 if keep else 3)
    assert why.total == pytest.approx(result.scores[result.address])


def test_explain_counts_scores_as_the_runner_did_clamped_and_weighted() -> None:
    wild = FakePlugin("wild", scores={"a:1": 7.0, "b:1": -2.0, "c:1": float("nan")})
    scheduler = _scheduler((wild, 3.0), picker=FakePlugin("picker", choice="a:1"))
    scheduler.pick(req(), ADDRS, NOW)
    [why] = scheduler.recent_picks()
    assert why.contributions == {"fake-plugin/wild": pytest.approx(3.0)}
    assert why.margin == pytest.approx(3.0)
    assert why.runner_up in ("b:1", "c:1")
    assert why.runner_up_total == 0.0


def test_a_pick_that_fails_is_not_recorded() -> None:
    scheduler = _scheduler((FakePlugin("s", scores={"a:1": 1.0}), 1.0), keep=set())
    with pytest.raises(NoEndpointAvailable):
        scheduler.pick(req(), ADDRS, NOW)
    assert scheduler.recent_picks() == []
    assert scheduler.picks.count == 0


def test_each_record_keeps_its_own_picks_scores() -> None:
    """A record holds references to what its pick computed, so a later pick (new dicts from
    the scorers) does not change an earlier explanation."""
    scheduler = build_scheduler("queue-kv", _store(), seed=1)
    scheduler.store.update("a:1", Signals(waiting=0, running=0, kv_usage=0.1, scraped_at=NOW))
    scheduler.store.update("b:1", Signals(waiting=5, running=0, kv_usage=0.1, scraped_at=NOW))
    scheduler.store.update("c:1", Signals(waiting=7, running=0, kv_usage=0.1, scraped_at=NOW))
    scheduler.pick(req(), ADDRS, NOW)
    scheduler.store.update("a:1", Signals(waiting=9, running=0, kv_usage=0.9, scraped_at=NOW))
    scheduler.pick(req(), ADDRS, NOW + 1)
    newest, oldest = scheduler.recent_picks()
    assert (oldest.endpoint, oldest.decided_by, oldest.at) == ("a:1", "queue-scorer", NOW)
    assert (newest.endpoint, newest.runner_up, newest.at) == ("b:1", "c:1", NOW + 1)
    assert (newest.decided_by, newest.margin) == ("queue-scorer", pytest.approx(0.5))
    assert oldest.runner_up == "b:1" and oldest.margin == pytest.approx(5 / 7)  # (7-0)/7 - (7-5)/7


def test_the_model_and_adapter_of_each_pick_are_kept() -> None:
    scheduler = _scheduler((FakePlugin("s", scores={"a:1": 1.0}), 1.0))
    scheduler.pick(req("sql-lora", lora="sql-lora"), ADDRS, NOW)
    [why] = scheduler.recent_picks()
    assert (why.model, why.lora) == ("sql-lora", "sql-lora")


def test_a_record_is_allocated_for_the_profile_s_scorers() -> None:
    assert PickRecord(3).scores == [None, None, None]

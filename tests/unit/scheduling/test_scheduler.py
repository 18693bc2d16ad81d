from __future__ import annotations

import random

import pytest

from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_scheduler
from poolgate.scheduling.errors import NoEndpointAvailable
from poolgate.scheduling.interfaces import LLMRequest, WeightedScorer
from poolgate.scheduling.pickers.max_score import MaxScorePicker
from poolgate.scheduling.scheduler import Scheduler, SchedulerProfile

from .builders import NOW, FakePlugin, req

ADDRS = ["a:1", "b:1", "c:1"]


def _store(queues: dict[str, int] | None = None, at: float = NOW) -> EndpointStore:
    store = EndpointStore()
    for address, q in (queues or dict.fromkeys(ADDRS, 0)).items():
        store.update(address, Signals(waiting=q, running=0, kv_usage=0.1, scraped_at=at))
    return store


def test_runner_clamps_and_weights_scores() -> None:
    high = FakePlugin("high", scores={"a:1": 7.0, "b:1": 0.5, "c:1": -3.0})
    nan = FakePlugin("nan", scores={"a:1": float("nan"), "b:1": 1.0, "zzz:1": 1.0})
    picker = FakePlugin("picker")
    profile = SchedulerProfile("t", (), (WeightedScorer(high, 2.0), WeightedScorer(nan, 1.0)),
                               picker)
    result = Scheduler(profile, _store()).pick(req(), ADDRS, NOW)
    assert result.scores == pytest.approx({"a:1": 2.0, "b:1": 2.0, "c:1": 0.0})
    assert picker.seen_scores == result.scores
    assert result.profile == "t"
    assert result.address == "a:1"


def test_runner_clamps_a_score_for_every_candidate_too() -> None:
    # Every candidate scored (the runner's quick path) but with values out of range or NaN.
    # The NaN sits between in-range values, where min() and max() do not see it.
    nan = FakePlugin("nan", scores={"a:1": 0.5, "b:1": float("nan"), "c:1": 0.75})
    over = FakePlugin("over", scores={"a:1": 2.0, "b:1": -1.0, "c:1": 0.5})
    profile = SchedulerProfile("t", (), (WeightedScorer(nan, 2.0), WeightedScorer(over, 1.0)),
                               FakePlugin("p"))
    result = Scheduler(profile, _store()).pick(req(), ADDRS, NOW)
    assert result.scores == {"a:1": 2.0, "b:1": 0.0, "c:1": 2.0}
    assert list(result.scores) == ADDRS


def test_runner_totals_add_in_scorer_order_whether_or_not_every_candidate_is_scored() -> None:
    rng = random.Random(7)
    full = [FakePlugin(f"f{i}", scores={a: rng.random() for a in ADDRS}) for i in range(3)]
    partial = FakePlugin("part", scores={"b:1": rng.random(), "zzz:1": 0.25})
    scorers = (WeightedScorer(full[0], 0.3), WeightedScorer(partial, 1.7),
               WeightedScorer(full[1], 4.0), WeightedScorer(full[2], 0.1))
    result = Scheduler(SchedulerProfile("t", (), scorers, FakePlugin("p")),
                       _store()).pick(req(), ADDRS, NOW)
    expected = {}
    for a in ADDRS:
        total = 0.0
        for w in scorers:
            score = w.scorer.score(req(), [], None)  # type: ignore[arg-type]
            if a in score:
                total += w.weight * score[a]
        expected[a] = total
    assert result.scores == expected  # exactly: the same additions in the same order
    assert list(result.scores) == ADDRS


def test_runner_filters_in_order_and_fails_on_empty() -> None:
    keep_ab = FakePlugin("ab", keep={"a:1", "b:1"})
    keep_c = FakePlugin("c", keep={"c:1"})
    profile = SchedulerProfile("t", (keep_ab, keep_c), (), FakePlugin("p"))
    with pytest.raises(NoEndpointAvailable, match="fake-plugin/c removed every candidate"):
        Scheduler(profile, _store()).pick(req(), ADDRS, NOW)


def test_runner_without_endpoints_raises_503_error() -> None:
    profile = SchedulerProfile("t", (), (), FakePlugin("p"))
    with pytest.raises(NoEndpointAvailable) as info:
        Scheduler(profile, _store()).pick(req(), [], NOW)
    assert info.value.status == 503


def test_runner_sees_stale_metrics_as_unknown_and_in_flight() -> None:
    store = _store({"a:1": 1}, at=NOW - 2.5)
    store.update("b:1", Signals(waiting=2, running=0, kv_usage=0.0, scraped_at=NOW - 1.0))
    store.begin("b:1")
    store.begin("b:1")
    scheduler = Scheduler(SchedulerProfile("t", (), (), FakePlugin("p")), store, staleness=2.0)
    views = {e.address: e for e in scheduler.endpoints(["a:1", "b:1", "new:1"], NOW)}
    assert views["a:1"].signals is None
    assert views["b:1"].signals is not None
    assert views["b:1"].in_flight == 2
    assert views["new:1"].signals is None


def test_runner_adds_the_other_replicas_counts_to_its_own() -> None:
    store = _store()
    store.begin("a:1", streamed=True)
    store.set_peer_counts({"a:1": (5, 2), "b:1": (3, 0)})
    scheduler = Scheduler(SchedulerProfile("t", (), (), FakePlugin("p")), store)
    views = {e.address: e for e in scheduler.endpoints(ADDRS, NOW)}
    assert (views["a:1"].in_flight, views["a:1"].awaiting_first_token) == (6, 3)
    assert (views["b:1"].in_flight, views["c:1"].in_flight) == (3, 0)
    # A new view is built when only the peers' counts changed.
    store.set_peer_counts({})
    views = {e.address: e for e in scheduler.endpoints(ADDRS, NOW)}
    assert (views["a:1"].in_flight, views["a:1"].awaiting_first_token) == (1, 1)


def test_default_profile_leaves_an_endpoint_hot_through_other_replicas() -> None:
    # This replica sent nothing yet; the others have 13 requests in flight on a:1, the prefix's
    # holder: the load bound applies to the merged counts.
    store = _store({"a:1": 0, "b:1": 0, "c:1": 0})
    scheduler = build_scheduler("default", store, seed=1)
    scheduler.on_picked(_chat(1), "a:1")
    assert scheduler.pick(_chat(1), ADDRS, NOW).address == "a:1"
    store.set_peer_counts({"a:1": (13, 0), "c:1": (1, 0)})
    assert scheduler.pick(_chat(1), ADDRS, NOW).address == "b:1"


def test_on_picked_and_retain_reach_observers() -> None:
    plugin = FakePlugin("obs")
    profile = SchedulerProfile("t", (), (), MaxScorePicker(rng=random.Random(1)),
                               observers=(plugin,), retainers=(plugin,))
    scheduler = Scheduler(profile, _store())
    r = req()
    scheduler.on_picked(r, "b:1")
    scheduler.retain(["b:1"])
    assert plugin.picked == [(r, "b:1")]
    assert plugin.retained == [["b:1"]]


def _chat(i: int) -> LLMRequest:
    return req(messages=[{"role": "system", "content": "You are terse. " * 40},
                         {"role": "user", "content": f"question number {i} " * 10}])


def test_default_profile_follows_prefix_while_load_is_close() -> None:
    store = _store({"a:1": 1, "b:1": 0, "c:1": 0})
    scheduler = build_scheduler("default", store, seed=1)
    first = _chat(1)
    scheduler.on_picked(first, "a:1")
    # Same conversation again: a:1 holds its prefix and is within the load bound.
    assert scheduler.pick(_chat(1), ADDRS, NOW).address == "a:1"


def test_default_profile_leaves_a_hot_endpoint() -> None:
    # The bound reads the gateway's own in-flight counts: 13 requests already went to a:1, more
    # than the least-loaded endpoint's 0 + 12.
    store = _store({"a:1": 9, "b:1": 0, "c:1": 1})
    for _ in range(13):
        store.begin("a:1")
    store.begin("c:1")
    scheduler = build_scheduler("default", store, seed=1)
    scheduler.on_picked(_chat(1), "a:1")
    result = scheduler.pick(_chat(1), ADDRS, NOW)
    assert result.address == "b:1"
    # Prefix-only keeps piling onto the hot endpoint: the failure mode the bound prevents.
    prefix_only = build_scheduler("prefix-only", store, seed=1)
    prefix_only.on_picked(_chat(1), "a:1")
    assert prefix_only.pick(_chat(1), ADDRS, NOW).address == "a:1"


def test_default_profile_spreads_a_shared_prefix_burst() -> None:
    # Every request shares a long system prompt; the gateway counts in-flight requests while
    # the scraped queues stay at 0 (a burst faster than the scrape interval).
    store = _store()
    scheduler = build_scheduler("default", store, seed=3)
    for i in range(60):
        r = _chat(i)
        address = scheduler.pick(r, ADDRS, NOW).address
        scheduler.on_picked(r, address)
        store.begin(address)
    loads = [store.in_flight(a) for a in ADDRS]
    # No endpoint runs more than the bound's slack (12) + 1 ahead of the least loaded.
    assert max(loads) - min(loads) <= 13 and min(loads) > 0


def test_default_profile_prefers_loaded_adapter() -> None:
    store = EndpointStore()
    for address, loras in (("a:1", {"x", "y"}), ("b:1", {"sql"}), ("c:1", {"z"})):
        store.update(address, Signals(waiting=0, running=1, kv_usage=0.2, max_lora=2,
                                      lora_running=frozenset(loras), scraped_at=NOW))
    scheduler = build_scheduler("default", store, seed=1)
    assert scheduler.pick(req("sql", lora="sql", prompt="hi"), ADDRS, NOW).address == "b:1"


@pytest.mark.parametrize("profile", ["round-robin", "random", "least-in-flight", "queue-kv",
                                     "prefix-only", "default"])
def test_every_builtin_profile_picks_a_candidate(profile: str) -> None:
    scheduler = build_scheduler(profile, _store(), seed=1)
    assert scheduler.pick(_chat(0), ADDRS, NOW).address in ADDRS
    assert scheduler.profile.name == profile


def test_least_in_flight_profile() -> None:
    store = _store()
    store.begin("a:1")
    store.begin("c:1")
    scheduler = build_scheduler("least-in-flight", store, seed=1)
    assert scheduler.pick(req(prompt="x"), ADDRS, NOW).address == "b:1"


def _expected_views(store: EndpointStore, addresses: list[str], now: float,
                    staleness: float) -> list[tuple[str, Signals | None, int, int]]:
    out = []
    for address in addresses:
        state = store.get(address)
        if state is None:
            out.append((address, None, 0, 0))
            continue
        signals = state.signals
        if signals is not None and signals.scraped_at < now - staleness:
            signals = None
        out.append((address, signals, state.seen_in_flight, state.seen_awaiting_first_token))
    return out


def test_views_follow_every_store_change_between_picks() -> None:
    # The views are kept between picks and rebuilt where the store changed: after any sequence
    # of scrapes, in-flight changes, peer counts and clock moves (forwards and backwards) they
    # match what the store says at that moment.
    rng = random.Random(5)
    addresses = [f"10.0.0.{i}:8000" for i in range(12)]
    store = EndpointStore()
    now = 50.0
    for address in addresses[:-2]:  # the last two are unknown to the store at first
        store.update(address, Signals(waiting=0, running=0, kv_usage=0.0, scraped_at=now))
    scheduler = Scheduler(SchedulerProfile("t", (), (), FakePlugin("p")), store, staleness=2.0)
    subsets = [addresses, addresses[:5], tuple(addresses[3:])]
    for step in range(400):
        action = rng.randrange(6)
        address = rng.choice(addresses)
        if action == 0:
            store.update(address, Signals(waiting=rng.randrange(5), running=0, kv_usage=0.5,
                                          scraped_at=now - rng.choice([0.0, 1.0, 2.0, 3.0])))
        elif action == 1:
            store.begin(address, streamed=rng.random() < 0.5)
        elif action == 2:
            store.end(address, unanswered=rng.random() < 0.5)
        elif action == 3:
            store.set_peer_counts({a: (rng.randrange(3), rng.randrange(2))
                                   for a in rng.sample(addresses, 3)})
        elif action == 4:
            now += rng.choice([0.1, 0.5, 1.0, 2.5, -1.0])
        elif step % 50 == 0:
            scheduler.retain(addresses)
        chosen = rng.choice(subsets)
        views = scheduler.endpoints(chosen, now)
        got = [(e.address, e.signals, e.in_flight, e.awaiting_first_token) for e in views]
        assert got == _expected_views(store, list(chosen), now, 2.0), step

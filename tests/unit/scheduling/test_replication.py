"""Hot prefixes (`hotPrefix` of the prefix scorers): demand, the fewest holders, hysteresis,
the choice of a new holder, with either prefix index, and through the real Scheduler."""

from __future__ import annotations

import copy
import math
import random
from collections import Counter, defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.builder import build_scheduler
from poolgate.scheduling.config import SchedulerConfig
from poolgate.scheduling.errors import SchedulerConfigError
from poolgate.scheduling.interfaces import BuildContext, Endpoint, LLMRequest
from poolgate.scheduling.prefix.replication import HotPrefixParams, HotPrefixPolicy
from poolgate.scheduling.profiles import BUILTIN_PROFILES
from poolgate.scheduling.scorers import precise_prefix_cache
from poolgate.scheduling.scorers.prefix_cache import Params, PrefixCacheScorer

from .builders import NOW, cycle, ep, req
from .test_precise_prefix import BS, _req, _served

# The default profile's bound: limit = min(least + max(12, least), 12 + 2 x mean).
BOUND = {"loadBoundAbs": 12, "loadBoundRel": 1.0, "loadBoundMean": 2.0, "loadSignal": "in-flight"}
ADDRS = [f"10.0.0.{i}:8000" for i in range(8)]
IN_FLIGHT = 32


def _policy(limit: float = 10.0, **params: Any) -> HotPrefixPolicy:
    """A policy whose load bound's limit is `limit` whatever the loads (target 0.5 x limit)."""
    return HotPrefixPolicy(
        HotPrefixParams.model_validate({"groupBlocks": 2, "window": 32, **params}),
        lambda loads: limit, lambda endpoints: [e.in_flight for e in endpoints])


def _keys(group: int, question: int = 0) -> list[int]:
    """Block keys of a request: 4 blocks of its group's prefix, then 2 of its question."""
    return [group * 1000 + i for i in range(4)] + [group * 1000 + 100 + question, 7]


def _eps(*loads: int, awaiting: Sequence[int] = ()) -> list[Endpoint]:
    aw = list(awaiting) + [0] * (len(loads) - len(awaiting))
    return [ep(ADDRS[i], in_flight=n, awaiting=aw[i]) for i, n in enumerate(loads)]


def _arrive(policy: HotPrefixPolicy, pattern: Sequence[int], times: int = 1) -> None:
    for _ in range(times):
        for group in pattern:
            policy.observe(_keys(group))


def _warm(group: int, *addresses: str) -> dict[str, int]:
    """Matches of a request of `group` held in full by `addresses`."""
    return dict.fromkeys(addresses, len(_keys(group)))


def _picks(policy: HotPrefixPolicy, group: int, matches: dict[str, int],
           endpoints: list[Endpoint], times: int = 40) -> dict[str, int]:
    """`times` picks of the group with the same loads (its averaged demand settles)."""
    shaped = matches
    for _ in range(times):
        shaped = policy.shape(_keys(group), matches, endpoints)
    return shaped


# -- demand ----------------------------------------------------------------------------------------

def test_a_group_is_its_block_at_group_depth_and_short_requests_have_none() -> None:
    policy = _policy(groupBlocks=3)
    assert policy.group_key([11, 22, 33, 44]) == 33
    assert policy.group_key([11, 22]) is None
    policy.observe([11, 22])
    assert policy.share(22) == 0.0 and repr(policy).startswith("HotPrefixPolicy(groups=0")


def test_the_share_is_a_moving_average_over_the_window() -> None:
    policy = _policy(window=50)
    _arrive(policy, [0, 0, 0, 1], times=10)  # 40 arrivals: less than a window of evidence
    assert policy.share(_keys(0)[1]) == pytest.approx(0.75 * (1 - 0.98 ** 40), abs=0.02)
    _arrive(policy, [0, 0, 0, 1], times=100)  # group 0: 3 of every 4 arrivals
    assert policy.share(_keys(0)[1]) == pytest.approx(0.75, abs=0.02)
    assert policy.share(_keys(1)[1]) == pytest.approx(0.25, abs=0.02)
    _arrive(policy, [1], times=200)  # four windows later group 0 has faded
    assert policy.share(_keys(0)[1]) < 0.02
    assert policy.share(_keys(1)[1]) > 0.98


# -- the second holder comes early -----------------------------------------------------------------

def _prefix_scorer(hot: dict[str, Any] | None) -> PrefixCacheScorer:
    params: dict[str, Any] = {"blockSize": 4, **BOUND}
    if hot is not None:
        params["hotPrefix"] = hot
    return PrefixCacheScorer(params=Params.model_validate(params))


HOT = "aaaabbbbccccdddd"  # 4 blocks of 4 characters
COLD = "wwwwxxxxyyyyzzzz"


def test_a_hot_group_gets_a_second_holder_before_the_first_reaches_the_bound() -> None:
    with_policy, without = _prefix_scorer({"groupBlocks": 2}), _prefix_scorer(None)
    for scorer in (with_policy, without):
        for i in range(300):  # 5 of 6 requests are of the hot group, all answered by ep 0
            scorer.on_picked(req(prompt=HOT if i % 6 else COLD), ADDRS[0 if i % 6 else 3])
    # Ep 0 carries 8 requests, the others 1-3: the bound's limit is min(1 + 12, 12 + 2 x 3.5) =
    # 13, so the bound keeps ep 0's affinity. The hot group's demand, ~5/6 of 14 in flight, is
    # more than its target of 0.5 x 13 per holder.
    endpoints = _eps(8, 1, 2, 3)
    assert without.bound.limit([8, 1, 2, 3]) == 13
    assert without.score(req(prompt=HOT), endpoints, cycle()) == {ADDRS[0]: 1.0}
    first = with_policy.score(req(prompt=HOT), endpoints, cycle())
    assert first == {ADDRS[0]: 1.0}  # one pick is no evidence yet: its average demand settles
    for _ in range(10):
        scores = with_policy.score(req(prompt=HOT), endpoints, cycle())
    # The least loaded other endpoint is its second holder, scored as if it held the prefix;
    # the load scorers then send the next request there.
    assert scores == {ADDRS[0]: 1.0, ADDRS[1]: 1.0}
    assert with_policy.hot is not None
    assert with_policy.hot.holders(with_policy.hashes(req(prompt=HOT))) == (ADDRS[0], ADDRS[1])
    # A cold group keeps plain affinity.
    assert with_policy.score(req(prompt=COLD), endpoints, cycle()) == {ADDRS[3]: 1.0}


def test_a_group_within_one_replicas_share_stays_on_one_holder() -> None:
    policy = _policy(limit=10.0)  # target 5 per holder
    _arrive(policy, [0, 1, 2, 3, 4, 5, 6, 7], times=40)  # eight equal groups
    matches = _warm(0, ADDRS[0])
    # 40 in flight: 5 per group, but each group is 1/8 of the traffic.
    assert _picks(policy, 0, matches, _eps(5, 5, 5, 5, 5, 5, 5, 5)) is matches
    # The same demand from a group with more than one replica's share of the traffic: two.
    hot = _policy(limit=10.0)
    _arrive(hot, [0, 0, 1, 2, 3, 4, 5, 6], times=40)
    assert _picks(hot, 0, matches, _eps(22, 1, 1, 1, 1, 1, 1, 1)).keys() == {ADDRS[0], ADDRS[1]}


def test_no_holder_is_added_before_the_group_has_settled_arrivals() -> None:
    policy = _policy(settleArrivals=8, window=2)
    _arrive(policy, [0], times=7)
    matches = _warm(0, ADDRS[0])
    assert _picks(policy, 0, matches, _eps(9, 0, 0, 0)) is matches
    _arrive(policy, [0])
    assert len(_picks(policy, 0, matches, _eps(9, 0, 0, 0))) == 2


def test_a_group_that_is_most_of_its_busy_holders_load_gets_a_second_one_early() -> None:
    # Half of the traffic: with 12 in flight its demand is 6 (over the target of 5) ...
    policy = _policy(limit=10.0)
    _arrive(policy, [0, 1], times=150)
    # ... with 8 in flight, 4: below its target, but it is most of its holder's 6.
    _picks(policy, 0, _warm(0, ADDRS[0]), _eps(6, 1, 1, 0))
    assert policy.holders(_keys(0)) == (ADDRS[0], ADDRS[3])
    # A group that is less than half of its busy holder's load does not: the rest is the
    # other groups' to spread.
    other = _policy(limit=10.0)
    _arrive(other, [0, 1, 1], times=100)  # a third: 2.7 of 8 in flight
    _picks(other, 0, _warm(0, ADDRS[0]), _eps(6, 1, 1, 0))
    assert other.holders(_keys(0)) == ()


@pytest.mark.parametrize(("in_flight", "holders"), [
    pytest.param(4, 0, id="below-target-plain"),
    pytest.param(6, 2, id="over-one"),
    pytest.param(10, 2, id="exactly-two"),
    pytest.param(11, 3, id="over-two"),
    pytest.param(26, 6, id="over-five"),
])
def test_the_fewest_holders_that_keep_each_below_its_target(in_flight: int, holders: int) -> None:
    policy = _policy(limit=10.0)  # target 5 per holder; the group is all the traffic
    _arrive(policy, [0], times=300)
    loads = [in_flight] + [0] * 7
    for _ in range(20):  # one holder at most per settleArrivals (8) of the group
        _picks(policy, 0, _warm(0, ADDRS[0]), _eps(*loads), times=8)
        _arrive(policy, [0], times=8)
    assert len(policy.holders(_keys(0))) == holders
    assert holders == 0 or holders == math.ceil(in_flight / 5)


def test_a_group_never_gets_more_holders_than_its_share_of_the_replicas() -> None:
    policy = _policy(limit=10.0)
    _arrive(policy, [0, 1, 2, 3, 4], times=60)  # a fifth of the traffic, on 8 replicas: 1.6
    for _ in range(10):
        _picks(policy, 0, _warm(0, ADDRS[0]), _eps(200, 0, 0, 0, 0, 0, 0, 0), times=8)
        _arrive(policy, [0, 1, 2, 3, 4], times=8)
    assert len(policy.holders(_keys(0))) == 2


# -- hysteresis --------------------------------------------------------------------------------------

def test_holders_shrink_only_well_below_the_target_and_after_shrink_after_arrivals() -> None:
    policy = _policy(limit=10.0, shrinkBelow=0.6, shrinkAfter=64)  # target 5; shrink below 3
    _arrive(policy, [0], times=300)
    keys, warm = _keys(0), _warm(0, ADDRS[0], ADDRS[1])
    _picks(policy, 0, warm, _eps(6, 0, 0, 0))
    assert policy.holders(keys) == (ADDRS[0], ADDRS[1])
    changes = 0
    last = policy.holders(keys)
    # Demand wanders around the target (4 to 6 in flight, more than 2 pick by pick): no
    # flapping, no third holder.
    for i in range(300):
        _arrive(policy, [0])
        policy.shape(keys, warm, _eps(3 if i % 2 else 2, 2 if i % 3 else 3, 0, 0)
                     if i % 7 else _eps(11, 0, 0, 0))
        now = policy.holders(keys)
        changes += now != last
        last = now
    assert changes == 0 and len(last) == 2
    # Demand falls below 0.6 x 5 = 3: the more loaded holder goes, the other keeps the group.
    _picks(policy, 0, warm, _eps(2, 0, 0, 0))
    assert policy.holders(keys) == (ADDRS[1],)
    # It comes back only over the target again, and only after settled arrivals.
    _picks(policy, 0, warm, _eps(4, 0, 0, 0))
    _picks(policy, 0, warm, _eps(0, 6, 0, 0))
    assert policy.holders(keys) == (ADDRS[1],)
    _arrive(policy, [0], times=8)
    _picks(policy, 0, warm, _eps(0, 6, 0, 0))
    assert policy.holders(keys) == (ADDRS[1], ADDRS[0])


def test_a_shrink_waits_for_shrink_after_arrivals_since_the_last_change() -> None:
    policy = _policy(limit=10.0, shrinkAfter=20)
    _arrive(policy, [0], times=300)
    keys, warm = _keys(0), _warm(0, ADDRS[0])
    _picks(policy, 0, warm, _eps(6, 0, 0, 0))
    _arrive(policy, [0], times=19)
    _picks(policy, 0, warm, _eps(1, 0, 0, 0))
    assert len(policy.holders(keys)) == 2
    _arrive(policy, [0])
    policy.shape(keys, warm, _eps(0, 1, 0, 0))
    assert policy.holders(keys) == (ADDRS[0],)  # the more loaded one went


# -- which endpoint becomes a holder ----------------------------------------------------------------

@pytest.mark.parametrize(("loads", "awaiting", "warm", "other_hot", "chosen"), [
    pytest.param((9, 1, 2, 3), (), (), (), 1, id="least-loaded"),
    pytest.param((9, 1, 2, 3), (0, 1), (), (), 2, id="not-prefilling"),
    pytest.param((9, 1, 2, 3), (), (3,), (), 3, id="already-holds-the-prefix"),
    pytest.param((9, 1, 2, 3), (), (3,), (3,), 1, id="fewest-hot-groups-first"),
    pytest.param((9, 1, 2, 7), (), (3,), (), 1, id="a-holder-with-room-first"),
])
def test_the_new_holder(loads: tuple[int, ...], awaiting: tuple[int, ...], warm: tuple[int, ...],
                        other_hot: tuple[int, ...], chosen: int) -> None:
    policy = _policy(limit=10.0)  # target 5
    _arrive(policy, [0, 0, 5], times=100)
    if other_hot:  # group 5 is hot on ep 0 and the other_hot endpoints
        _picks(policy, 5, _warm(5, ADDRS[0]),
               _eps(30, *[0 if i + 1 in other_hot else 20 for i in range(3)]))
        assert set(policy.holders(_keys(5))) == {ADDRS[0], *[ADDRS[i] for i in other_hot]}
    matches = _warm(0, ADDRS[0], *[ADDRS[i] for i in warm])
    _picks(policy, 0, matches, _eps(*loads, awaiting=awaiting))
    holders = policy.holders(_keys(0))
    assert holders == (ADDRS[0], ADDRS[chosen])  # the first: the most loaded already holding it


def test_only_the_holders_keep_a_replicated_groups_affinity() -> None:
    policy = _policy(limit=10.0)
    _arrive(policy, [0], times=300)
    # Ep 2 holds the prefix too (an old spill) but is busy; ep 1 becomes the second holder.
    matches = {ADDRS[0]: 6, ADDRS[2]: 6}
    assert _picks(policy, 0, matches, _eps(6, 0, 5, 1)) == {ADDRS[0]: 6, ADDRS[1]: 6}
    # A holder holding only part of the prefix is scored as deep as the best holder.
    assert policy.shape(_keys(0), {ADDRS[0]: 5, ADDRS[1]: 1}, _eps(6, 0, 5, 1)) == {
        ADDRS[0]: 5, ADDRS[1]: 5}
    # Holders outside this pick's candidates: plain matches.
    assert policy.shape(_keys(0), {ADDRS[2]: 6}, [ep(ADDRS[2]), ep(ADDRS[3])]) == {ADDRS[2]: 6}


def test_a_group_nobody_holds_gets_no_holders() -> None:
    policy = _policy(limit=10.0)
    _arrive(policy, [0], times=300)
    assert _picks(policy, 0, {ADDRS[1]: 1}, _eps(9, 0, 0)) == {ADDRS[1]: 1}
    assert policy.holders(_keys(0)) == ()


def test_replica_concurrency_caps_the_target() -> None:
    policy = _policy(limit=100.0, replicaConcurrency=3)
    assert policy.target([1, 2]) == 3
    assert _policy(limit=100.0).target([1, 2]) == 50
    _arrive(policy, [0], times=300)
    _picks(policy, 0, _warm(0, ADDRS[0]), _eps(4, 0, 0))
    assert len(policy.holders(_keys(0))) == 2


def test_retain_and_the_group_bound() -> None:
    policy = _policy(limit=10.0, maxGroups=2)
    _arrive(policy, [0], times=300)
    _picks(policy, 0, _warm(0, ADDRS[0]), _eps(6, 0, 0))
    policy.retain([ADDRS[1], ADDRS[2]])
    assert policy.holders(_keys(0)) == (ADDRS[1],)
    policy.retain([ADDRS[2]])
    assert policy.holders(_keys(0)) == () and policy.replicated() == []
    _picks(policy, 0, _warm(0, ADDRS[2]), _eps(0, 0, 6))  # plain again, then hot again
    assert len(policy.replicated()) == 1
    _arrive(policy, [1, 2])  # a third group: the least recent (group 0) is forgotten
    assert policy.share(_keys(0)[1]) == 0.0 and policy.replicated() == []


# -- with the precise index -------------------------------------------------------------------------

def _precise(hot: dict[str, Any]) -> precise_prefix_cache.PrecisePrefixCacheScorer:
    params = precise_prefix_cache.Params.model_validate(
        {"tokenProcessorConfig": {"blockSize": BS}, **BOUND, "hotPrefix": hot})
    scorer = precise_prefix_cache.create("precise", params, BuildContext(random.Random(1)))
    assert isinstance(scorer, precise_prefix_cache.PrecisePrefixCacheScorer)
    return scorer


def test_with_the_precise_index_holders_come_from_the_kv_events() -> None:
    a, b, c, d = ADDRS[:4]
    text = "the quick brown fox jumps over the lazy dog " * 4
    other = "a completely different prompt " * 4
    hot = {"groupBlocks": 4, "window": 16}

    def scorer_after_traffic() -> precise_prefix_cache.PrecisePrefixCacheScorer:
        scorer = _precise(hot)
        _served(scorer.index, a, text)
        for i in range(60):  # 3 of 4 requests are of the hot group
            scorer.on_picked(_req() if i % 4 else _req(other), a)
        return scorer

    scorer = scorer_after_traffic()
    # C's server holds the prefix too (requests from another gateway replica): its events say so.
    _served(scorer.index, c, text)
    # A is loaded, C is busy but below the target; B and D are idle but cold.
    for _ in range(10):
        scores = scorer.score(_req(), _eps(9, 0, 3, 0), cycle())
    assert scores == {a: pytest.approx(1.0), c: pytest.approx(1.0)}
    assert scorer.hot is not None
    assert scorer.hot.holders(scorer.keys(_req(), BS)) == (a, c)
    # Without a second holder in the events, the least loaded cold endpoint is the new one.
    fresh = scorer_after_traffic()
    for _ in range(10):
        scores = fresh.score(_req(), _eps(9, 1, 3, 0), cycle())
    assert scores == {a: pytest.approx(1.0), d: pytest.approx(1.0)}
    assert b not in scores


# -- parameters ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(("scorer", "params", "message"), [
    pytest.param("prefix-cache-scorer", {"hotPrefix": {}},
                 "hotPrefix needs loadBoundAbs", id="no-target"),
    pytest.param("precise-prefix-cache-scorer", {"hotPrefix": {}},
                 "hotPrefix needs loadBoundAbs", id="precise-no-target"),
    pytest.param("prefix-cache-scorer", {**BOUND, "maxBlocks": 4, "hotPrefix": {}},
                 r"hotPrefix.groupBlocks \(8\) is more than maxBlocks \(4\)", id="too-deep"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"replicateAt": 0}},
                 "replicateAt", id="replicate-at"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"replicateAt": 1.5}},
                 "replicateAt", id="replicate-at-over-1"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"shrinkBelow": 1}},
                 "shrinkBelow", id="shrink-below"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"window": 1}},
                 "window", id="window"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"groupBlocks": 0}},
                 "groupBlocks", id="group-blocks"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"settleArrivals": 0}},
                 "settleArrivals", id="settle"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"shrinkAfter": 0}},
                 "shrinkAfter", id="shrink-after"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"maxGroups": 0}},
                 "maxGroups", id="max-groups"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"replicaConcurrency": 0}},
                 "replicaConcurrency", id="replica-concurrency"),
    pytest.param("prefix-cache-scorer", {**BOUND, "hotPrefix": {"holders": 2}},
                 "hotPrefix.holders: unknown field", id="unknown"),
])
def test_bad_hot_prefix_parameters_are_refused_at_load(scorer: str, params: dict[str, Any],
                                                       message: str) -> None:
    config = SchedulerConfig.from_dict({"profile": "p", "plugins": [
        {"type": scorer, "params": params}]})
    with pytest.raises(SchedulerConfigError, match=message):
        build_scheduler(config, EndpointStore())


def test_hot_prefix_parameters_load_in_both_spellings() -> None:
    camel = Params.model_validate({**BOUND, "hotPrefix": {
        "groupBlocks": 4, "replicateAt": 0.7, "replicaConcurrency": 6, "shrinkBelow": 0.5,
        "window": 100, "settleArrivals": 3, "shrinkAfter": 10, "maxGroups": 9}})
    snake = Params.model_validate({**BOUND, "hot_prefix": {
        "group_blocks": 4, "replicate_at": 0.7, "replica_concurrency": 6, "shrink_below": 0.5,
        "window": 100, "settle_arrivals": 3, "shrink_after": 10, "max_groups": 9}})
    assert camel == snake and camel.hot_prefix is not None
    assert camel.hot_prefix.replica_concurrency == 6
    # Without a load bound, replicaConcurrency alone gives the target.
    assert Params.model_validate({"hotPrefix": {"replicaConcurrency": 4}}).hot_prefix


# -- through the real Scheduler ----------------------------------------------------------------------

def _group_chat(group: int, question: int) -> LLMRequest:
    return req(messages=[{"role": "system", "content": f"group {group} instructions. " * 40},
                         {"role": "user", "content": f"question {question} " * 10}])


def _replay(hot: dict[str, Any] | None, seed: int = 0) -> Replay:
    """Zipf-skewed arrivals (16 groups, exponent 0.85: the hottest brings ~25 %) through the
    default profile's plugins on 8 endpoints. The traffic grows: each request stays in flight
    for the next 8 arrivals at first, IN_FLIGHT after the first 1000 (Little's law: 32 in
    flight, ~8 of them of the hottest group, then)."""
    plugins = copy.deepcopy(BUILTIN_PROFILES["default"])
    prefix = next(p for p in plugins if p["type"] == "prefix-cache-scorer")
    prefix["params"].pop("hotPrefix", None)
    if hot is not None:
        prefix["params"]["hotPrefix"] = hot
    store = EndpointStore()
    for address in ADDRS:
        store.update(address, Signals(waiting=0, running=0, kv_usage=0.1, scraped_at=NOW))
    scheduler = build_scheduler(SchedulerConfig.from_dict(
        {"profile": "replay", "plugins": plugins, "seed": 1}), store)
    scorer = next(w.scorer for w in scheduler.profile.scorers
                  if isinstance(w.scorer, PrefixCacheScorer))
    rng = random.Random(seed)
    weights = [1 / (g + 1) ** 0.85 for g in range(16)]
    live: deque[str] = deque()
    replay = Replay(scorer)
    n = 3000
    for i in range(n):
        group = rng.choices(range(16), weights)[0]
        r = _group_chat(group, rng.randrange(16))
        address = scheduler.pick(r, ADDRS, NOW).address
        served = replay.served[group]
        if served and address not in served:
            # A new endpoint for the group (a full prefill there): how loaded were the ones
            # already serving it, against the bound's limit at that moment?
            loads = [store.in_flight(a) for a in ADDRS]
            replay.spreads[group].append(
                (min(store.in_flight(a) for a in served), scorer.bound.limit(loads) or 0.0))
        served.add(address)
        store.begin(address)
        scheduler.on_picked(r, address)
        live.append(address)
        # The traffic grows for the first third of the replay, then stays: in flight, 8 at
        # first, IN_FLIGHT from arrival 1000 on.
        while len(live) > min(IN_FLIGHT, 8 + IN_FLIGHT * i // 1000):
            store.end(live.popleft())
        if i >= n // 2:
            replay.late[group][address] += 1
    return replay


@dataclass
class Replay:
    """Where each group's requests went in a replay."""

    scorer: PrefixCacheScorer
    served: dict[int, set[str]] = field(default_factory=lambda: defaultdict(set))
    # Per group, each time it reached another endpoint: (the least loaded of the endpoints
    # already serving it, the load bound's limit) at that moment.
    spreads: dict[int, list[tuple[int, float]]] = field(default_factory=lambda: defaultdict(list))
    late: dict[int, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))


def test_the_scheduler_replicates_the_hot_group_early_onto_two_holders() -> None:
    with_policy, without = _replay({}), _replay(None)
    hot = with_policy.scorer.hot
    assert hot is not None and without.scorer.hot is None
    holders = hot.holders(with_policy.scorer.hashes(_group_chat(0, 0)))
    # The hottest group (~8 in flight, its target ~6 per holder) has two holders, and they
    # are the only endpoints that ever served it: one deliberate full prefill, no spill.
    assert len(holders) == 2
    assert with_policy.served[0] == set(holders)
    assert min(with_policy.late[0].values()) > 0.25 * sum(with_policy.late[0].values())
    # It went to the second while the first was well below the load bound's limit...
    (first_load, limit), = with_policy.spreads[0]
    assert first_load < limit - 2
    # ... where without the policy it spread only when the bound took affinity away.
    assert without.spreads[0]
    assert all(load > limit for load, limit in without.spreads[0])
    # The groups with less than one replica's share of the traffic have no holder set and each
    # stayed on one endpoint; no group has more than two holders.
    for group in range(2, 16):
        assert hot.holders(with_policy.scorer.hashes(_group_chat(group, 0))) == ()
        assert len(with_policy.late[group]) == 1, (group, with_policy.late[group])
    assert all(len(v.holders) <= 2 for v in hot.replicated())

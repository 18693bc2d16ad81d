"""Leader election over a Lease: the pure decisions of one candidate."""

from __future__ import annotations

from typing import Any

from poolgate.kube.leader import LeaderElector, LeaseTiming, Outcome, Role

TIMING = LeaseTiming(lease_duration=15, renew_deadline=10, retry_period=2)


def lease(holder: str, transitions: int = 0, renew: str = "t0") -> dict[str, Any]:
    return {"metadata": {"resourceVersion": "1"},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 15, "acquireTime": "t0",
                     "renewTime": renew, "leaseTransitions": transitions}}


def test_no_lease_is_acquired() -> None:
    me = LeaderElector("a", TIMING)
    spec = me.next_spec(None, 0.0, "w")
    assert spec == {"holderIdentity": "a", "leaseDurationSeconds": 15, "acquireTime": "w",
                    "renewTime": "w", "leaseTransitions": 0}
    assert me.observe(Outcome.WROTE, 0.0) is Role.LEADER
    assert repr(me) == "LeaderElector('a', leader)"


def test_own_lease_is_renewed_keeping_acquire_time() -> None:
    me = LeaderElector("a", TIMING)
    spec = me.next_spec(lease("a", 3), 1.0, "w2")
    assert spec is not None
    assert (spec["renewTime"], spec["acquireTime"], spec["leaseTransitions"]) == ("w2", "t0", 3)


def test_anothers_lease_is_left_until_unrenewed_for_its_duration() -> None:
    me = LeaderElector("b", TIMING)
    assert me.next_spec(lease("a"), 100.0, "w") is None
    assert me.observe(Outcome.HELD, 100.0) is Role.FOLLOWER
    assert me.next_spec(lease("a"), 114.9, "w") is None
    # renewed at 110 (the record changed): the clock starts again from when we saw it
    assert me.next_spec(lease("a", renew="t1"), 110.0, "w") is None
    assert me.next_spec(lease("a", renew="t1"), 124.9, "w") is None
    taken = me.next_spec(lease("a", renew="t1"), 125.0, "w")
    assert taken is not None
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 1)


def test_a_released_lease_is_taken_at_once() -> None:
    me = LeaderElector("b", TIMING)
    taken = me.next_spec(lease("", 2), 0.0, "w")
    assert taken is not None
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("b", 2)


def test_leader_steps_down_only_after_failing_to_renew_for_the_deadline() -> None:
    me = LeaderElector("a", TIMING)
    me.observe(Outcome.WROTE, 0.0)
    assert me.observe(Outcome.FAILED, 9.9) is Role.LEADER
    assert me.observe(Outcome.FAILED, 10.0) is Role.FOLLOWER
    assert not me.is_leader()


def test_a_follower_stays_one_on_failure_and_when_held() -> None:
    me = LeaderElector("a", TIMING)
    assert me.observe(Outcome.FAILED, 0.0) is Role.FOLLOWER
    me.observe(Outcome.WROTE, 1.0)
    assert me.observe(Outcome.HELD, 2.0) is Role.FOLLOWER

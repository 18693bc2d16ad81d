"""Region order from --region / --region-order, and a pool's tiers."""

from __future__ import annotations

from types import MappingProxyType

from poolgate.balancing import PoolBalancer, RegionOrder, usable_endpoints
from poolgate.balancing.spec import BackendPolicySpec
from poolgate.core.pools import Endpoint, Pool


def pool(*placed: tuple[int, str | None]) -> Pool:
    eps = tuple(Endpoint("127.0.0.1", port, region=region) for port, region in placed)
    return Pool("default", "p", 8000, MappingProxyType({"app": "x"}), eps)


def test_parse_drops_blanks_and_duplicates() -> None:
    order = RegionOrder.parse(" eu ", "eu, us,,asia,us")
    assert order == RegionOrder("eu", ("eu", "us", "asia"))
    assert RegionOrder.parse(None, None).has_preference is False


def test_home_first_then_order_then_others_by_name() -> None:
    order = RegionOrder("eu", ("us", "asia"))
    assert order.sorted_regions(["zz", "asia", "aa", "us", "eu"]) == ["eu", "us", "asia", "aa", "zz"]
    assert order.tiers(["us", "eu"]) == [("eu",), ("us",)]


def test_without_preference_every_region_is_one_tier() -> None:
    assert RegionOrder().tiers(["us", "eu"]) == [("eu", "us")]


def test_endpoints_without_region_count_in_the_home_region() -> None:
    balancer = PoolBalancer(pool((1, None), (2, "us"), (3, "eu")), None, RegionOrder("eu", ("us",)))
    assert balancer.tiers == [("eu", ("127.0.0.1:1", "127.0.0.1:3")), ("us", ("127.0.0.1:2",))]
    assert balancer.choose({"127.0.0.1:1"}, lambda a: None, lambda a: 0) is None


def test_dry_run_policy_still_decides() -> None:
    spec = BackendPolicySpec("default", "bp", "CUSTOM_METRICS", max_utilization=0.6, dry_run=True)
    balancer = PoolBalancer(pool((1, "eu"), (2, "us")), spec, RegionOrder("eu", ("us",)))
    util = {"127.0.0.1:1": 0.9, "127.0.0.1:2": 0.1}
    decision = balancer.choose({"127.0.0.1:1", "127.0.0.1:2"}, util.get, lambda a: 0)
    assert decision is not None and decision.region == "us" and decision.reason == "spill"


def test_usable_endpoints_applies_panic_below_half() -> None:
    addrs = ("a", "b", "c", "d")
    assert usable_endpoints(addrs, {"a"}, None, 0.0) == ("b", "c", "d")
    assert usable_endpoints(addrs, {"a", "b"}, None, 0.0) == ("c", "d")  # half: no panic
    assert usable_endpoints(addrs, {"a", "b", "c"}, None, 0.0) == addrs  # panic: all

"""The scrape interval policy as plain data (issue 16, item 5): no sockets, no event loop."""

from __future__ import annotations

import math

import pytest

from poolgate.datalayer.scraper import MetricsScraper
from poolgate.datalayer.scraper_cadence import ScrapeCadence
from poolgate.datalayer.store import EndpointStore

GATEWAY = ScrapeCadence(0.05, 1.0, 3.0)  # poolgate serve's defaults


@pytest.mark.parametrize(("idle_for", "interval"), [
    (0.0, 0.05),      # a request just now
    (2.999, 0.05),    # still busy
    (3.0, 1.0),       # idle from `idle_after` on
    (60.0, 1.0),
    (math.inf, 1.0),  # never had a request
])
def test_interval_is_the_base_while_busy_and_the_idle_one_after(idle_for: float,
                                                                interval: float) -> None:
    assert GATEWAY.interval(idle_for) == interval
    assert GATEWAY.is_idle(idle_for) is (interval == 1.0)


@pytest.mark.parametrize(("staleness", "idle"), [
    (2.0, 1.0),    # the default bound leaves the idle interval as it is
    (10.0, 1.0),   # a looser bound never lengthens it
    (0.5, 0.25),   # a stricter one caps it at half the bound ...
    (0.06, 0.05),  # ... but never below the base interval
])
def test_the_idle_interval_stays_within_half_the_staleness_bound(staleness: float,
                                                                 idle: float) -> None:
    capped = GATEWAY.within(staleness)
    assert (capped.base, capped.idle, capped.idle_after) == (0.05, idle, 3.0)


def test_a_fixed_cadence_never_backs_off() -> None:
    fixed = ScrapeCadence.fixed(0.2)
    assert not fixed.adaptive
    assert fixed.interval(math.inf) == 0.2
    assert not fixed.is_idle(math.inf)
    assert GATEWAY.adaptive


@pytest.mark.parametrize(("args", "match"), [
    ((0.0, 1.0), "scrape interval must be > 0"),
    ((0.5, 0.1), r"idle scrape interval \(0.1s\) must not be shorter than the scrape interval \(0.5s\)"),
    ((0.05, 1.0, -1.0), "idle delay must be >= 0"),
])
def test_bad_cadences_are_rejected_with_the_reason(args: tuple[float, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ScrapeCadence(*args)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_scraper_follows_requests_bound_for_the_pool() -> None:
    clock = Clock()
    scraper = MetricsScraper(EndpointStore(), GATEWAY, clock=clock)
    assert scraper.current_interval("a:1") == 1.0  # never requested: idle
    scraper.pool_requested(("a:1", "b:1"))
    assert scraper.current_interval("a:1") == scraper.current_interval("b:1") == 0.05
    clock.now += 2.5
    scraper.pool_requested(("b:1",))
    clock.now += 1.0
    assert scraper.idle_for("a:1") == pytest.approx(3.5)
    assert scraper.current_interval("a:1") == 1.0
    assert scraper.current_interval("b:1") == 0.05


def test_the_scraper_caps_its_idle_interval_by_its_staleness_bound() -> None:
    scraper = MetricsScraper(EndpointStore(), GATEWAY, staleness=0.4)
    assert scraper.cadence == ScrapeCadence(0.05, 0.2, 3.0)
    assert scraper.interval == 0.05
    assert MetricsScraper(EndpointStore(), 0.1).cadence == ScrapeCadence.fixed(0.1)

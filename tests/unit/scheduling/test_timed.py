"""The self-timing scheduler: the same picks as the plain one, every pick timed, plugins on one
pick in PLUGIN_SAMPLE."""

from __future__ import annotations

from poolgate.datalayer import EndpointStore, Signals
from poolgate.observability.scheduling import SchedulerTimings
from poolgate.scheduling import Scheduler, build_scheduler
from poolgate.scheduling.timed import PLUGIN_SAMPLE, TimedScheduler
from tests.unit.scheduling.builders import NOW, req

ADDRESSES = [f"10.0.0.{i}:8000" for i in range(1, 5)]


def _store() -> EndpointStore:
    store = EndpointStore()
    for i, address in enumerate(ADDRESSES):
        store.update(address, Signals(waiting=i % 3, running=1, kv_usage=0.1 * i, scraped_at=NOW))
    return store


def test_the_timed_scheduler_picks_as_the_plain_one() -> None:
    timings = SchedulerTimings()
    plain = build_scheduler("default", _store(), seed=3)
    timed = build_scheduler("default", _store(), seed=3, timings=timings)
    assert isinstance(timed, TimedScheduler) and type(plain) is Scheduler
    for i in range(2 * PLUGIN_SAMPLE):
        r = req(prompt=f"prompt {i % 5}")
        a, b = plain.pick(r, ADDRESSES, NOW), timed.pick(r, ADDRESSES, NOW)
        assert (a.address, a.scores) == (b.address, b.scores)
        plain.on_picked(r, a.address)
        timed.on_picked(r, b.address)
    assert timings.e2e.count == 2 * PLUGIN_SAMPLE
    profile = timed.profile
    assert all(type(f).__name__ != "_TimedFilter" for f in profile.filters)  # swapped back
    for point, plugin in [("Filter", profile.filters[0]), ("Scorer", profile.scorers[0].scorer),
                          ("Picker", profile.picker)]:
        h = timings.plugin(point, plugin.typed_name.type, plugin.typed_name.name)
        assert h.count == 2, point
        assert 0 < h.sum < timings.e2e.sum

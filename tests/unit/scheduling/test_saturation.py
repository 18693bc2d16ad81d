from __future__ import annotations

import pytest

from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore
from poolgate.scheduling.errors import SHED_MESSAGE, RequestShed
from poolgate.scheduling.saturation import SaturationDetector, should_shed

NOW = 50.0


def _store(*fleet: tuple[int, float, float]) -> EndpointStore:
    store = EndpointStore()
    for i, (queue, kv, age) in enumerate(fleet):
        store.update(f"e{i}:1", Signals(waiting=queue, running=0, kv_usage=kv,
                                        scraped_at=NOW - age))
    return store


@pytest.mark.parametrize(("fleet", "saturated"), [
    pytest.param([(0, 0.1, 0)], False, id="idle"),
    pytest.param([(5, 0.1, 0), (9, 0.2, 0)], True, id="all-queues-at-threshold"),
    pytest.param([(0, 0.8, 0), (0, 0.95, 0)], True, id="all-kv-at-threshold"),
    pytest.param([(5, 0.1, 0), (4, 0.79, 0)], False, id="one-with-headroom"),
    pytest.param([(0, 0.0, 3.0)], True, id="stale-counts-as-saturated"),
    pytest.param([(0, 0.0, 3.0), (1, 0.5, 1.0)], False, id="fresh-one-with-headroom"),
    pytest.param([], True, id="empty-pool"),
])
def test_is_saturated(fleet: list[tuple[int, float, float]], saturated: bool) -> None:
    store = _store(*fleet)
    detector = SaturationDetector(queue_threshold=5, kv_threshold=0.8, staleness=2.0)
    addresses = [f"e{i}:1" for i in range(len(fleet))]
    assert detector.is_saturated(addresses, store, NOW) is saturated


def test_unknown_endpoint_counts_as_saturated() -> None:
    assert SaturationDetector().is_saturated(["never:1"], EndpointStore(), NOW)


@pytest.mark.parametrize(("kwargs", "message"), [
    pytest.param({"queue_threshold": -1}, "queue_threshold", id="queue"),
    pytest.param({"kv_threshold": 1.5}, "kv_threshold", id="kv"),
    pytest.param({"staleness": 0}, "staleness", id="staleness"),
])
def test_detector_rejects_bad_settings(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SaturationDetector(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(("criticality", "priority", "saturated", "shed"), [
    pytest.param("Sheddable", None, True, True, id="sheddable-saturated"),
    pytest.param("sheddable", 5, True, True, id="sheddable-any-case"),
    pytest.param("Sheddable", None, False, False, id="sheddable-not-saturated"),
    pytest.param("Critical", None, True, False, id="critical"),
    pytest.param("Standard", None, True, False, id="standard"),
    pytest.param("Critical", -3, True, False, id="criticality-decides-over-priority"),
    pytest.param(None, -1, True, True, id="negative-priority"),
    pytest.param(None, -1, False, False, id="negative-priority-not-saturated"),
    pytest.param(None, 0, True, False, id="zero-priority"),
    pytest.param(None, 7, True, False, id="positive-priority"),
    pytest.param(None, None, True, False, id="nothing-set"),
])
def test_should_shed(criticality: str | None, priority: int | None, saturated: bool,
                     shed: bool) -> None:
    assert should_shed(criticality, priority, saturated) is shed


def test_shed_error_reply() -> None:
    reply = RequestShed().reply()
    assert reply.status == 429
    assert SHED_MESSAGE.encode() in reply.body
    assert b'"type":"RateLimitError"' in reply.body

"""Active health state: first result decides, then thresholds."""

from __future__ import annotations

from poolgate.datalayer.health import HealthTracker


def test_first_result_decides_then_thresholds_apply() -> None:
    t = HealthTracker()
    assert t.is_healthy("a") and not t.checked("a")
    assert t.record("a", False, 1.0, unhealthy_threshold=3) is True
    assert not t.is_healthy("a") and t.unhealthy == {"a"}
    assert t.record("a", True, 2.0, healthy_threshold=2) is False
    assert t.record("a", True, 3.0, healthy_threshold=2) is True
    assert t.is_healthy("a")
    for now in (4.0, 5.0):
        assert t.record("a", False, now, unhealthy_threshold=3, error="HTTP 503") is False
    assert t.record("a", True, 6.0) is False  # a pass resets the failure count
    for now in (7.0, 8.0):
        t.record("a", False, now, unhealthy_threshold=3)
    assert t.record("a", False, 9.0, unhealthy_threshold=3, error="HTTP 503") is True
    record = t.get("a")
    assert record is not None and record.last_error == "HTTP 503" and record.changed_at == 9.0


def test_retain_forgets_unchecked_endpoints() -> None:
    t = HealthTracker()
    t.record("a", False, 0.0)
    t.retain(["b"])
    assert t.is_healthy("a") and not t.checked("a")

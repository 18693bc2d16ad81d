"""The shared in-flight view's policy: settings, reports, which peers count, the merged totals."""

from __future__ import annotations

import json

import pytest

from poolgate.state.kv_endpoints import KVEndpoint
from poolgate.state.shared_load import (
    LinkState,
    PeerView,
    Report,
    SharedLoadSettings,
    decode_report,
    default_replica_id,
    encode_report,
)

NODE = (KVEndpoint("127.0.0.1", 6379),)


def _settings(**kw: object) -> SharedLoadSettings:
    return SharedLoadSettings(**{"nodes": NODE, "replica_id": "r1", **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "message"), [
    pytest.param({"nodes": ()}, r"^nodes: at least one", id="no-nodes"),
    pytest.param({"replica_id": ""}, r"^replica_id: '' must be non-empty", id="empty-id"),
    pytest.param({"replica_id": "a b"}, r"^replica_id: 'a b'", id="id-with-space"),
    pytest.param({"interval": 0.0}, r"^interval: 0 must be above 0", id="zero-interval"),
    pytest.param({"interval": 0.5, "staleness": 0.9},
                 r"^staleness: 0.9 s must be at least twice the interval \(0.5 s\)",
                 id="staleness-below-two-intervals"),
    pytest.param({"key": ""}, r"^key: '' must be non-empty", id="empty-key"),
])
def test_settings_refuse_unusable_values(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _settings(**kw)


def test_settings_derive_timeout_backoff_and_forgetting() -> None:
    s = _settings(interval=0.05, staleness=1.0)
    assert s.timeout == pytest.approx(0.25)
    # A slow store is given up on before a healthy view would go stale.
    assert _settings(interval=0.4, staleness=0.8).timeout == pytest.approx(0.4)
    assert [s.backoff(n) for n in range(7)] == pytest.approx(
        [0.05, 0.1, 0.2, 0.4, 0.8, 1.6, 2.0])
    assert s.backoff(1000) == 2.0
    assert s.idle_interval == 0.5
    assert _settings(interval=0.4, staleness=0.8).idle_interval == 0.4
    assert s.forget_after == 30.0
    assert _settings(staleness=5.0).forget_after == 50.0


def test_default_replica_id_is_host_and_pid() -> None:
    host, _, pid = default_replica_id().rpartition("-")
    assert host and pid.isdigit()


def test_report_round_trip() -> None:
    raw = encode_report(7, {"10.0.0.1:8000": (3, 1), "10.0.0.2:8000": (0, 0)})
    assert decode_report(raw) == Report(7, {"10.0.0.1:8000": (3, 1), "10.0.0.2:8000": (0, 0)})
    assert decode_report(raw.decode()) == decode_report(raw)


@pytest.mark.parametrize("raw", [
    pytest.param(b"\xff\xfe", id="not-utf8"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[1, 2]", id="not-an-object"),
    pytest.param(json.dumps({"v": 2, "seq": 1, "load": {}}).encode(), id="newer-version"),
    pytest.param(json.dumps({"v": 1, "seq": "1", "load": {}}).encode(), id="seq-not-int"),
    pytest.param(json.dumps({"v": 1, "seq": True, "load": {}}).encode(), id="seq-bool"),
    pytest.param(json.dumps({"v": 1, "seq": 1, "load": []}).encode(), id="load-not-map"),
    pytest.param(json.dumps({"v": 1, "seq": 1, "load": {"a:1": [1]}}).encode(), id="short-pair"),
    pytest.param(json.dumps({"v": 1, "seq": 1, "load": {"a:1": [-1, 0]}}).encode(),
                 id="negative"),
    pytest.param(json.dumps({"v": 1, "seq": 1, "load": {"a:1": [1.5, 0]}}).encode(),
                 id="not-integer"),
])
def test_decode_refuses_what_is_not_a_report(raw: bytes) -> None:
    assert decode_report(raw) is None


def _view(staleness: float = 1.0, forget_after: float = 30.0) -> PeerView:
    return PeerView("me", staleness, forget_after)


def _table(**reports: tuple[int, dict[str, tuple[int, int]]]) -> dict[str, bytes]:
    return {replica: encode_report(seq, counts) for replica, (seq, counts) in reports.items()}


def test_a_peer_counts_once_its_report_advanced() -> None:
    view = _view()
    view.update(_table(other=(5, {"a:1": (2, 1)})), now=0.0)
    # A report seen once may have been left by a replica that died before this one started.
    assert view.totals(0.0) == {} and view.live(0.0) == []
    view.update(_table(other=(6, {"a:1": (3, 1)})), now=0.05)
    assert view.live(0.05) == ["other"]
    assert view.totals(0.05) == {"a:1": (3, 1)}


def test_own_field_never_counts_and_peers_add_up() -> None:
    view = _view()
    for seq, now in ((1, 0.0), (2, 0.05)):
        view.update(_table(me=(seq, {"a:1": (50, 50)}), p=(seq, {"a:1": (2, 1), "b:1": (1, 0)}),
                           q=(seq + 10, {"a:1": (3, 2)})), now=now)
    assert view.totals(0.05) == {"a:1": (5, 3), "b:1": (1, 0)}
    assert sorted(view.live(0.05)) == ["p", "q"]


def test_a_silent_peer_drops_out_after_the_staleness_bound() -> None:
    view = _view(staleness=1.0)
    view.update(_table(dead=(1, {"a:1": (4, 0)}), alive=(1, {"a:1": (1, 0)})), now=0.0)
    view.update(_table(dead=(2, {"a:1": (4, 0)}), alive=(2, {"a:1": (1, 0)})), now=0.1)
    # "dead" stops at seq 2; "alive" keeps publishing.
    for i, now in enumerate((0.5, 1.0, 1.1, 1.5), start=3):
        view.update(_table(dead=(2, {"a:1": (4, 0)}), alive=(i, {"a:1": (1, 0)})), now=now)
    assert view.totals(1.1) == {"a:1": (1, 0)}
    assert view.live(1.5) == ["alive"]


def test_a_restarted_peer_counts_again_with_its_sequence_back_at_zero() -> None:
    view = _view()
    view.update(_table(p=(900, {"a:1": (9, 0)})), now=0.0)
    view.update(_table(p=(901, {"a:1": (9, 0)})), now=0.05)
    view.update(_table(p=(1, {"a:1": (1, 0)})), now=0.1)
    assert view.totals(0.1) == {"a:1": (1, 0)}


def test_a_withdrawn_peer_is_dropped_at_once() -> None:
    view = _view()
    view.update(_table(p=(1, {"a:1": (2, 0)})), now=0.0)
    view.update(_table(p=(2, {"a:1": (2, 0)})), now=0.05)
    view.update({}, now=0.1)
    assert view.totals(0.1) == {} and view.peers == {}


def test_the_whole_view_is_dropped_when_no_exchange_succeeded_for_the_staleness() -> None:
    view = _view(staleness=1.0)
    assert not view.fresh(0.0) and view.age(0.0) is None
    view.update(_table(p=(1, {"a:1": (2, 0)})), now=0.0)
    view.update(_table(p=(2, {"a:1": (2, 0)})), now=0.25)
    assert view.fresh(1.25) and view.totals(1.25) == {"a:1": (2, 0)}
    # The store stopped answering at 0.25: past the bound only local counts remain.
    assert not view.fresh(1.26)
    assert view.totals(1.26) == {} and view.live(1.26) == []
    assert view.age(1.26) == pytest.approx(1.01)


def test_peers_silent_for_long_are_forgotten_and_bad_fields_counted() -> None:
    view = _view(staleness=1.0, forget_after=30.0)
    view.update({**_table(dead=(1, {})), "junk": b"{}"}, now=0.0)
    assert view.bad_reports == 1
    assert view.forgotten(29.0) == []
    assert view.forgotten(30.5) == ["dead"]


def test_link_state_reports_transitions_only() -> None:
    link = LinkState()
    assert link.failed()  # never reached: the first failure is a transition (logged once)
    assert not link.failed() and not link.failed()
    assert link.failures == 3 and link.up is False
    assert link.succeeded()
    assert not link.succeeded()
    assert link.failures == 0 and link.up is True
    assert LinkState().succeeded()

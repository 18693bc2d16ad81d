from __future__ import annotations

import pytest

from poolgate.datalayer.signals import Signals
from poolgate.datalayer.store import EndpointStore


def _signals(at: float, waiting: int = 1) -> Signals:
    return Signals(waiting=waiting, running=0, kv_usage=0.1, scraped_at=at)


def test_begin_end_counts_in_flight_and_never_goes_negative() -> None:
    store = EndpointStore()
    store.begin("a:1")
    store.begin("a:1")
    store.end("a:1")
    assert store.in_flight("a:1") == 1
    store.end("a:1")
    store.end("a:1")
    store.end("never:1")
    assert store.in_flight("a:1") == 0
    assert store.in_flight("never:1") == 0


def test_streams_await_their_first_token_until_answered_or_ended() -> None:
    store = EndpointStore()
    store.begin("a:1", streamed=True)
    store.begin("a:1", streamed=True)
    store.begin("a:1")  # not streamed: its response starts only when it is complete
    state = store.get("a:1")
    assert state is not None
    assert (state.in_flight, state.awaiting_first_token) == (3, 2)
    store.answered("a:1")
    assert (state.in_flight, state.awaiting_first_token) == (3, 1)
    store.end("a:1", unanswered=True)  # failed before its first token
    store.end("a:1")
    assert (state.in_flight, state.awaiting_first_token) == (1, 0)
    store.answered("a:1")
    store.end("a:1", unanswered=True)
    store.answered("never:1")
    assert (state.in_flight, state.awaiting_first_token) == (0, 0)


@pytest.mark.parametrize(("age", "fresh"), [
    pytest.param(0.0, True, id="just-scraped"),
    pytest.param(2.0, True, id="at-the-bound"),
    pytest.param(2.01, False, id="stale"),
])
def test_fresh_signals_respects_staleness(age: float, fresh: bool) -> None:
    store = EndpointStore()
    store.update("a:1", _signals(10.0))
    got = store.fresh_signals("a:1", 10.0 + age, staleness=2.0)
    assert (got is not None) is fresh
    assert store.signals("a:1") is not None  # kept, however old


def test_unknown_endpoint_has_no_signals() -> None:
    store = EndpointStore()
    assert store.fresh_signals("a:1", 0.0) is None
    store.begin("a:1")
    assert store.fresh_signals("a:1", 0.0) is None


def test_failure_keeps_previous_signals_and_records_reason() -> None:
    store = EndpointStore()
    store.update("a:1", _signals(1.0, waiting=3))
    store.record_failure("a:1", "timeout", 2.0)
    state = store.get("a:1")
    assert state is not None
    assert (state.last_error, state.last_error_at, state.scrapes_ok, state.scrapes_failed) == \
        ("timeout", 2.0, 1, 1)
    assert store.fresh_signals("a:1", 2.0) == _signals(1.0, waiting=3)


def test_retain_keeps_endpoints_with_requests_in_flight() -> None:
    store = EndpointStore()
    for a in ("a:1", "b:1", "c:1"):
        store.update(a, _signals(0.0))
    store.begin("c:1")
    store.retain(["a:1"])
    assert sorted(s.address for s in store) == ["a:1", "c:1"]
    assert len(store) == 2
    assert set(store.states) == {"a:1", "c:1"}


def test_known_adapters_remember_what_endpoints_reported_until_they_leave() -> None:
    store = EndpointStore()
    store.update("a:1", Signals(waiting=0, running=1, kv_usage=0.1, scraped_at=0.0,
                                lora_running=frozenset({"sql"}), lora_waiting=frozenset({"tw"})))
    # The adapter finished: vLLM stops naming it, the store still knows it is an adapter.
    store.update("a:1", _signals(1.0))
    store.update("b:1", Signals(waiting=0, running=1, kv_usage=0.1, scraped_at=1.0,
                                lora_running=frozenset({"x"})))
    assert store.known_adapters(["a:1"]) == {"sql", "tw"}
    assert store.known_adapters(["a:1", "b:1", "c:1"]) == {"sql", "tw", "x"}
    store.retain(["b:1"])
    assert store.known_adapters(["a:1", "b:1"]) == {"x"}


def test_own_counts_are_what_a_replica_publishes() -> None:
    store = EndpointStore()
    store.begin("a:1", streamed=True)
    store.begin("a:1")
    store.begin("b:1")
    store.end("b:1")
    store.update("c:1", _signals(0.0))
    # Idle endpoints are left out: a report holds only what is in flight.
    assert store.own_counts() == {"a:1": (2, 1)}


def test_peer_counts_replace_the_previous_ones_for_known_endpoints_only() -> None:
    store = EndpointStore()
    store.update("a:1", _signals(0.0))
    store.begin("b:1")
    store.set_peer_counts({"a:1": (4, 1), "b:1": (2, 2), "elsewhere:1": (9, 9)})
    a, b = store.get("a:1"), store.get("b:1")
    assert a is not None and b is not None
    assert (a.peer_in_flight, a.peer_awaiting_first_token) == (4, 1)
    assert (b.peer_in_flight, b.peer_awaiting_first_token) == (2, 2)
    assert store.get("elsewhere:1") is None
    # The own counts are untouched (they are what this replica publishes).
    assert store.in_flight("b:1") == 1 and store.own_counts() == {"b:1": (1, 0)}
    store.set_peer_counts({"a:1": (1, 0)})
    assert (b.peer_in_flight, b.peer_awaiting_first_token) == (0, 0)
    assert a.peer_in_flight == 1


def test_seen_counts_are_own_plus_peers_through_every_change() -> None:
    store = EndpointStore()
    store.begin("a:1", streamed=True)
    state = store.get("a:1")
    assert state is not None

    def seen() -> tuple[int, int]:
        assert state is not None
        return state.seen_in_flight, state.seen_awaiting_first_token

    assert seen() == (1, 1)
    store.set_peer_counts({"a:1": (5, 2)})
    assert seen() == (6, 3)
    store.begin("a:1")
    store.answered("a:1")
    assert seen() == (7, 2)
    store.end("a:1")
    store.end("a:1")
    store.end("a:1")  # below zero for its own count: nothing changes
    assert seen() == (5, 2)
    store.begin("a:1", streamed=True)
    store.end("a:1", unanswered=True)
    store.answered("a:1")
    assert seen() == (5, 2)
    store.set_peer_counts({})
    assert seen() == (0, 0)

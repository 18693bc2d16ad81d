"""`Gateway.handle` without sockets: the stages and the one release point, with an in-memory
client and upstream pool (everything in between is the real gateway)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from poolgate.proxy.gateway import Gateway
from poolgate.scheduling.scorers.prefix_cache import PrefixCacheScorer
from tests.unit.proxy._fakes import (
    Answer,
    FakeResponder,
    FakeUpstreams,
    gateway,
    records,
    snapshot,
)

A, B = "10.0.0.1:8000", "10.0.0.2:8000"
REQUEST = {"model": "m", "prompt": "hello there", "max_tokens": 2}


def _released(gw: Gateway) -> None:
    """Nothing is held any more: breaker slots, in-flight counts, retry permits."""
    for _, breaker in gw.runtime.breakers():
        assert (breaker.active, breaker.pending, breaker.active_retries) == (0, 0, 0), breaker
    assert all(gw.store.in_flight(a) == 0 for a in (A, B))
    assert gw.active_requests == 0


async def test_a_request_goes_through_every_stage_and_releases_once(tmp_path: Path) -> None:
    upstreams = FakeUpstreams({A: [Answer()], B: [Answer()]})
    gw, log = gateway(snapshot(tmp_path), upstreams)
    client = FakeResponder(REQUEST)
    await gw.handle(client, 80)
    assert (client.status, client.sent) == (200, b'{"choices": []}')
    [conn] = upstreams.connections
    assert conn.released and not conn.closed  # the connection goes back to the pool
    [rec] = records(log)
    assert (rec["status"], rec["route"], rec["model"], rec["attempts"]) == (200, "default/route",
                                                                           "m", 1)
    assert rec["endpoint"] in (A, B) and "ttfb_ms" in rec
    _released(gw)


async def test_no_route_is_answered_404_and_logged(tmp_path: Path) -> None:
    gw, log = gateway(snapshot(tmp_path), FakeUpstreams({}))
    client = FakeResponder(REQUEST)
    await gw.handle(client, 8080)  # no listener on that port
    assert client.status == 404
    assert records(log)[0]["flag"] == "NR"
    _released(gw)


async def test_a_retry_ends_the_failed_attempt_before_the_next(tmp_path: Path) -> None:
    upstreams = FakeUpstreams({A: [Answer(503, b"busy")], B: [Answer(503, b"busy")]})
    gw, log = gateway(snapshot(tmp_path, """\
  retry:
    numRetries: 1
    perRetry: {backOff: {baseInterval: 1ms}}
"""), upstreams)
    client = FakeResponder(REQUEST)
    await gw.handle(client, 80)
    assert client.status == 503  # the last attempt's answer, relayed
    first, second = upstreams.connections
    assert first.closed and not first.released  # retried: its body was never relayed
    assert second.released
    assert [address for address, _ in upstreams.sent] in ([A, B], [B, A])
    assert records(log)[0]["attempts"] == 2
    _released(gw)


async def test_a_connect_failure_is_retried_elsewhere_and_fed_to_nobody_else(
        tmp_path: Path) -> None:
    upstreams = FakeUpstreams({A: [Answer(failure="connection failure")],
                               B: [Answer(failure="connection failure")]})
    gw, log = gateway(snapshot(tmp_path, """\
  retry:
    numRetries: 1
    retryOn: {triggers: [connect-failure]}
"""), upstreams)
    client = FakeResponder(REQUEST)
    await gw.handle(client, 80)
    assert client.status == 503
    assert client.sent == (b"upstream connect error or disconnect/reset before headers. "
                           b"retried and the latest reset reason: connection failure")
    [rec] = records(log)
    assert (rec["flag"], rec["attempts"]) == ("UF", 2)
    _released(gw)


async def test_overflow_answers_503_at_once_and_holds_nothing(tmp_path: Path) -> None:
    release = asyncio.Event()
    upstreams = FakeUpstreams({A: [Answer(wait=release)], B: [Answer(wait=release)]})
    gw, log = gateway(snapshot(tmp_path, """\
  circuitBreaker: {maxParallelRequests: 1, maxPendingRequests: 1}
"""), upstreams)
    first = asyncio.create_task(gw.handle(FakeResponder(REQUEST), 80))
    await asyncio.sleep(0.01)
    client = FakeResponder(REQUEST)
    await gw.handle(client, 80)
    assert client.status == 503
    assert client.sent.endswith(b"reset reason: overflow")
    release.set()
    await first
    assert sorted(rec["status"] for rec in records(log)) == [200, 503]
    assert [rec["flag"] for rec in records(log) if rec["status"] == 503] == ["UO"]
    _released(gw)


async def test_a_client_that_goes_away_releases_everything(tmp_path: Path) -> None:
    never = asyncio.Event()
    upstreams = FakeUpstreams({A: [Answer(wait=never)], B: [Answer(wait=never)]})
    gw, log = gateway(snapshot(tmp_path), upstreams)
    task = asyncio.create_task(gw.handle(FakeResponder(REQUEST), 80))
    await asyncio.sleep(0.01)
    assert sum(gw.store.in_flight(a) for a in (A, B)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [conn] = upstreams.connections
    assert conn.closed
    assert records(log)[0]["flag"] == "DC"
    _released(gw)


async def test_the_prefix_index_learns_only_from_an_endpoint_that_answered(
        tmp_path: Path) -> None:
    upstreams = FakeUpstreams({A: [Answer(failure="connection failure")],
                               B: [Answer(failure="connection failure")]})
    gw, _ = gateway(snapshot(tmp_path, """\
  retry:
    numRetries: 1
    retryOn: {triggers: [connect-failure]}
"""), upstreams)
    scheduler = gw.scheduler(next(iter(gw.snapshot.pools.values())))
    # What the default profile's prefix scorer holds (its index: blocks per endpoint); the
    # scheduler is read, not patched (it may be compiled by mypyc, whose methods cannot be).
    [prefix] = [o for o in scheduler.profile.observers if isinstance(o, PrefixCacheScorer)]
    request = {**REQUEST, "prompt": "a prompt long enough for whole prefix blocks " * 8}
    await gw.handle(FakeResponder(request), 80)
    assert (prefix.index.blocks(A), prefix.index.blocks(B)) == (0, 0)  # neither answered
    upstreams.script = {A: [Answer()], B: [Answer()]}
    await gw.handle(FakeResponder(request), 80)
    answered = upstreams.sent[-1][0]
    other = B if answered == A else A
    assert prefix.index.blocks(answered) > 0
    assert prefix.index.blocks(other) == 0


async def test_a_reload_keeps_live_state_only_where_the_spec_is_unchanged(
        tmp_path: Path) -> None:
    gw, _ = gateway(snapshot(tmp_path / "a", """\
  circuitBreaker: {maxParallelRequests: 5}
  rateLimit:
    type: Local
    local: {rules: [{limit: {requests: 10, unit: Minute}}]}
"""), FakeUpstreams({}))
    before = next(iter(gw.runtime.clusters.values()))
    pool = next(iter(gw.snapshot.pools.values()))
    scheduler = gw.scheduler(pool)
    gw.swap(snapshot(tmp_path / "b", """\
  circuitBreaker: {maxParallelRequests: 5}
  rateLimit:
    type: Local
    local: {rules: [{limit: {requests: 10, unit: Minute}}]}
"""))
    same = next(iter(gw.runtime.clusters.values()))
    assert same is not before  # a new runtime per snapshot...
    assert same.breaker is before.breaker  # ...carrying the breaker's counters,
    assert same.rate_limiter is before.rate_limiter  # the tokens,
    assert gw.scheduler(next(iter(gw.snapshot.pools.values()))) is scheduler  # the prefix index
    gw.swap(snapshot(tmp_path / "c", """\
  circuitBreaker: {maxParallelRequests: 6}
"""))
    changed = next(iter(gw.runtime.clusters.values()))
    assert changed.breaker is not before.breaker
    assert changed.breaker.limits.max_parallel_requests == 6
    assert changed.rate_limiter is None


async def test_without_a_policy_a_connect_failure_goes_elsewhere_once_and_leaves_the_picks(
        tmp_path: Path) -> None:
    from poolgate.datalayer.signals import Signals

    upstreams = FakeUpstreams({A: [Answer(failure="connection failure")], B: [Answer()]})
    gw, log = gateway(snapshot(tmp_path), upstreams)
    for _ in range(10):
        client = FakeResponder(REQUEST)
        await gw.handle(client, 80)
        assert client.status == 200
    sent_to_a = [address for address, _ in upstreams.sent if address == A]
    assert len(sent_to_a) == 1  # after its connect failure, A is not picked again
    assert gw.store.unreachable == {A}
    assert [rec["attempts"] for rec in records(log)].count(2) == 1
    gw.store.update(A, Signals(waiting=0, running=0, kv_usage=0.0, scraped_at=0.0))
    assert gw.store.unreachable == set()  # a successful scrape brings it back
    _released(gw)


async def test_a_passing_health_check_makes_an_endpoint_reachable_again(tmp_path: Path) -> None:
    gw, _ = gateway(snapshot(tmp_path), FakeUpstreams({}))
    gw.store.mark_unreachable(A)
    gw.health.record(A, True, 0.0)
    assert gw.store.unreachable == set()

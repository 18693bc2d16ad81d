"""The KV-event subscriber over real ZMQ sockets on loopback, against a publisher the test
drives batch by batch (so it can drop one, or restart its sequence)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
import zmq
import zmq.asyncio

from poolgate.core.kv_events import END_SEQ, BlockStored, encode_batch
from poolgate.datalayer.kv_events import KVEventsHub, KVEventsSource
from poolgate.datalayer.kv_index import block_keys, root_key
from poolgate.datalayer.kv_stream import StreamState
from tests.support.processes import free_port

BS = 2
ENDPOINT = "127.0.0.1:8000"


class Publisher:
    """vLLM's sockets: an XPUB (so the test sees the subscription arrive) and a ROUTER that
    replays from what was sent."""

    def __init__(self, ctx: zmq.asyncio.Context, replay: bool = True,
                 ports: tuple[int, int] | None = None) -> None:
        self.port, self.replay_port = ports or (free_port(), free_port())
        self.pub = ctx.socket(zmq.XPUB)
        self.pub.bind(f"tcp://127.0.0.1:{self.port}")
        self.router = ctx.socket(zmq.ROUTER) if replay else None
        if self.router is not None:
            self.router.bind(f"tcp://127.0.0.1:{self.replay_port}")
        self.sent: dict[int, bytes] = {}
        self.replays: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def subscribed(self) -> None:
        async with asyncio.timeout(10):
            msg = await self.pub.recv()
        assert msg[:1] == b"\x01"
        if self.router is not None:
            self._task = asyncio.get_running_loop().create_task(self._serve_replays())

    def send(self, seq: int, block: int, *, deliver: bool = True) -> None:
        """Publish block `block` of one long prompt as batch `seq` (kept for replay; sent
        only when `deliver`)."""
        tokens = list(range(block * BS, (block + 1) * BS))
        parent = None if block == 0 else 1000 + block - 1
        payload = encode_batch(float(seq), [BlockStored([1000 + block], parent, tokens, BS)])
        self.sent[seq] = payload
        if deliver:
            self.pub.send_multipart([b"kv", seq.to_bytes(8, "big"), payload])

    async def _serve_replays(self) -> None:
        assert self.router is not None
        while True:
            identity, _, start = await self.router.recv_multipart()
            first = int.from_bytes(start, "big")
            self.replays.append(first)
            for seq in sorted(s for s in self.sent if s >= first):
                await self.router.send_multipart(  # vLLM 0.32's reply has the topic frame
                    [identity, b"", b"kv", seq.to_bytes(8, "big"), self.sent[seq]])
            await self.router.send_multipart([identity, b"", b"", END_SEQ, b""])

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self.pub.close(linger=0)
        if self.router is not None:
            self.router.close(linger=0)


@pytest.fixture
async def ctx() -> AsyncIterator[zmq.asyncio.Context]:
    context = zmq.asyncio.Context()
    yield context
    context.destroy(linger=0)


def _source(pub: Publisher) -> KVEventsSource:
    return KVEventsSource(
        socket_port=None, endpoints=((ENDPOINT, f"tcp://127.0.0.1:{pub.port}"),),
        replay_endpoints=((ENDPOINT, f"tcp://127.0.0.1:{pub.replay_port}"),)
        if pub.router is not None else (),
        topic="kv", hold=30.0, replay_timeout=5.0)


async def _until(predicate: Callable[[], bool], what: str) -> None:
    try:
        async with asyncio.timeout(10):
            while not predicate():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"waited 10 s for {what}") from None


def _held(hub: KVEventsHub, source: KVEventsSource, n: int = 8) -> int:
    keys = block_keys(list(range(n * BS)), BS, root_key(None))
    return hub.index_for(source).match_lengths(keys, {ENDPOINT}).get(ENDPOINT, 0)


async def _started(pub: Publisher, source: KVEventsSource) -> KVEventsHub:
    hub = KVEventsHub()
    hub.index_for(source)
    hub.set_targets({source: [ENDPOINT]})
    hub.start()
    await pub.subscribed()
    return hub


async def test_batches_in_order_fill_the_index(ctx: zmq.asyncio.Context) -> None:
    pub = Publisher(ctx)
    source = _source(pub)
    hub = await _started(pub, source)
    try:
        for seq in range(3):
            pub.send(seq, seq)
        await _until(lambda: _held(hub, source) == 3, "three blocks")
        (stream,) = hub.streams()
        assert stream.stats.batches == 3 and stream.stats.gaps == 0
        assert stream.state(asyncio.get_running_loop().time()) is StreamState.CONSISTENT
        assert pub.replays == []
    finally:
        await hub.close()
        await pub.close()


async def test_a_dropped_batch_is_replayed(ctx: zmq.asyncio.Context) -> None:
    pub = Publisher(ctx)
    source = _source(pub)
    hub = await _started(pub, source)
    try:
        pub.send(0, 0)
        pub.send(1, 1, deliver=False)  # lost on the way
        pub.send(2, 2)
        await _until(lambda: _held(hub, source) == 3, "three blocks after the replay")
        (stream,) = hub.streams()
        assert pub.replays == [1]
        assert (stream.stats.gaps, stream.stats.replays_ok) == (1, 1)
        assert stream.state(asyncio.get_running_loop().time()) is StreamState.CONSISTENT
    finally:
        await hub.close()
        await pub.close()


async def test_without_replay_a_lost_batch_degrades_the_endpoint(
        ctx: zmq.asyncio.Context) -> None:
    pub = Publisher(ctx, replay=False)
    source = _source(pub)
    hub = await _started(pub, source)
    try:
        pub.send(0, 0)
        await _until(lambda: _held(hub, source) == 1, "the first block")
        pub.send(1, 1, deliver=False)
        pub.send(2, 0)  # block 0 stored again (after an eviction, say)
        (stream,) = hub.streams()
        await _until(lambda: stream.stats.gaps == 1 and stream.expected == 3, "the gap")
        now = asyncio.get_running_loop().time()
        assert stream.state(now) is StreamState.DEGRADED
        assert not hub.index_for(source).usable(ENDPOINT, now)
        assert _held(hub, source) == 1  # cleared, then block 0 learnt again
    finally:
        await hub.close()
        await pub.close()


async def test_a_restarted_publisher_is_cleared(ctx: zmq.asyncio.Context) -> None:
    pub = Publisher(ctx)
    source = _source(pub)
    hub = await _started(pub, source)
    try:
        for seq in range(4):
            pub.send(seq, seq)
        await _until(lambda: _held(hub, source) == 4, "four blocks")
        pub.sent.clear()
        pub.send(0, 0)  # a new server process starts its sequence over
        (stream,) = hub.streams()
        await _until(lambda: stream.stats.restarts == 1, "the restart")
        assert _held(hub, source) == 1
    finally:
        await hub.close()
        await pub.close()


async def test_a_publisher_that_goes_away_is_forgotten_and_followed_again(
        ctx: zmq.asyncio.Context) -> None:
    pub = Publisher(ctx)
    source = _source(pub)
    hub = await _started(pub, source)
    try:
        for seq in range(3):
            pub.send(seq, seq)
        await _until(lambda: _held(hub, source) == 3, "three blocks")
        (stream,) = hub.streams()
        await pub.close()
        await _until(lambda: stream.stats.disconnects == 1, "the disconnect")
        assert _held(hub, source) == 0
        # A new server process on the same ports, starting its sequence at 0.
        pub = Publisher(ctx, ports=(pub.port, pub.replay_port))
        await pub.subscribed()
        pub.send(0, 0)
        await _until(lambda: _held(hub, source) == 1, "the new process's block")
        assert stream.state(asyncio.get_running_loop().time()) is StreamState.CONSISTENT
    finally:
        await hub.close()
        await pub.close()


async def test_endpoints_follow_set_targets(ctx: zmq.asyncio.Context) -> None:
    pub = Publisher(ctx)
    source = _source(pub)
    hub = await _started(pub, source)
    try:
        pub.send(0, 0)
        await _until(lambda: _held(hub, source) == 1, "a block")
        hub.set_targets({source: []})
        assert list(hub.streams()) == [] and _held(hub, source) == 0
        hub.set_targets({})  # the source is no longer used by any pool
        assert list(hub.streams()) == []
    finally:
        await hub.close()
        await pub.close()


def test_publisher_addresses() -> None:
    source = KVEventsSource(socket_port=5557, replay_port=5558,
                            endpoints=(("10.0.0.9:8000", "tcp://10.0.0.9:6000"),))
    assert source.publisher("10.0.0.1:8000") == "tcp://10.0.0.1:5557"
    assert source.replay("10.0.0.1:8000") == "tcp://10.0.0.1:5558"
    assert source.publisher("10.0.0.9:8000") == "tcp://10.0.0.9:6000"
    assert source.publisher("[fd00::1]:8000") == "tcp://[fd00::1]:5557"
    assert source.publisher("vllm-0.vllm.ns.svc:8000") == "tcp://vllm-0.vllm.ns.svc:5557"
    assert KVEventsSource(socket_port=None).publisher("10.0.0.1:8000") is None
    assert KVEventsSource().replay("10.0.0.1:8000") is None

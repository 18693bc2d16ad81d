"""Subscribing to the model servers' KV-cache events (vLLM's ZMQ publisher) into block indexes.

Each endpoint gets its own SUB socket, connected to the endpoint's publisher (vLLM binds
`tcp://*:5557` on each pod, so every gateway replica connects and reads the same events). The
address is `tcp://{endpoint host}:{socketPort}`, or given per endpoint (a local fleet on one
host, where replica i publishes on port + i); the replay socket likewise. One asyncio task per
endpoint reads its batches `(topic, 8-byte big-endian sequence, msgpack batch)` and hands them to
a `StreamTracker` (kv_stream.py: order, gaps, restarts, trust). When batches are missing it asks
the replay socket (a DEALER to vLLM's ROUTER: `(b"", start)`, answered `(b"", topic, seq,
payload)` ... then `(b"", b"", -1, b"")` by vLLM 0.32, without the topic frame by older
releases) and gives the answer, or None after `replay_timeout`, to the tracker.

`KVEventsHub` is what the gateway owns: one subscriber (and one `KVBlockIndex`) per distinct
`KVEventsSource` (the scorer's parameters), built when a configuration is swapped in, following
the endpoints of the pools that use it (`set_targets`), started with the gateway and closed with
it. Nothing here can fail a request: a dead publisher just leaves its endpoint waiting or
degraded, and the scorer falls back to its approximate index for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import zmq
import zmq.asyncio

from poolgate._aio import cancel_and_wait
from poolgate.core.kv_events import END_SEQ
from poolgate.datalayer.kv_index import DEFAULT_MAX_BLOCKS_PER_ENDPOINT, KVBlockIndex
from poolgate.datalayer.kv_stream import StreamTracker

log = logging.getLogger(__name__)

DEFAULT_SOCKET_PORT = 5557
DEFAULT_HOLD = 10.0
DEFAULT_REPLAY_TIMEOUT = 5.0
# After a socket error, the endpoint's task waits this long before it connects again.
_RETRY_DELAY = 1.0
_HEARTBEAT_MS = 2000


@dataclass(frozen=True, slots=True)
class KVEventsSource:
    """Where each endpoint's KV events come from, and how a stream that lost events is treated.

    `endpoints` / `replay_endpoints` map an endpoint's `host:port` to its publisher / replay
    address; an endpoint not named there uses `tcp://{host}:{socket_port}` (and
    `replay_port`), or has none when the port is None. `topic` is the ZMQ subscription prefix
    (vLLM's `topic`, "" for all). `hold`: seconds a stream must stay consistent after lost
    events before its entries are used again. Hashable: one subscriber per distinct source.
    """

    socket_port: int | None = DEFAULT_SOCKET_PORT
    replay_port: int | None = None
    endpoints: tuple[tuple[str, str], ...] = ()
    replay_endpoints: tuple[tuple[str, str], ...] = ()
    topic: str = ""
    hold: float = DEFAULT_HOLD
    replay_timeout: float = DEFAULT_REPLAY_TIMEOUT
    max_blocks_per_endpoint: int = DEFAULT_MAX_BLOCKS_PER_ENDPOINT

    def publisher(self, address: str) -> str | None:
        """The PUB address of endpoint `address`, or None when it has none."""
        return _address_of(address, self.endpoints, self.socket_port)

    def replay(self, address: str) -> str | None:
        """The replay (ROUTER) address of endpoint `address`, or None."""
        return _address_of(address, self.replay_endpoints, self.replay_port)


def _address_of(address: str, explicit: tuple[tuple[str, str], ...],
                port: int | None) -> str | None:
    for name, url in explicit:
        if name == address:
            return url
    if port is None:
        return None
    host = address.rpartition(":")[0] or address
    return f"tcp://{host}:{port}"


class KVEventSubscriber:
    """One SUB socket and task per endpoint of a source, feeding one `KVBlockIndex`."""

    def __init__(self, source: KVEventsSource) -> None:
        self.source = source
        self.index = KVBlockIndex(source.max_blocks_per_endpoint)
        self.trackers: dict[str, StreamTracker] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._addresses: list[str] = []

    @property
    def running(self) -> bool:
        """True between `start()` and `close()`."""
        return self._ctx is not None

    def set_endpoints(self, addresses: Iterable[str]) -> None:
        """Subscribe to exactly the endpoints `addresses` from now on (cheap when unchanged)."""
        wanted = list(dict.fromkeys(addresses))
        self._addresses = wanted
        keep = set(wanted)
        for address in [a for a in self.trackers if a not in keep]:
            task = self._tasks.pop(address, None)
            if task is not None:
                task.cancel()
            del self.trackers[address]
        self.index.retain(keep)
        for address in wanted:
            if address not in self.trackers:
                self.trackers[address] = StreamTracker(address, self.index, self.source.hold)
            if self._ctx is not None and address not in self._tasks:
                self._spawn(address)

    def start(self, context: zmq.asyncio.Context) -> None:
        """Start one task per endpoint (inside a running event loop)."""
        if self._ctx is not None:
            return
        self._ctx = context
        self.set_endpoints(self._addresses)

    async def close(self) -> None:
        """Stop every task; each closes its own sockets."""
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._ctx = None
        await cancel_and_wait(tasks)

    def _spawn(self, address: str) -> None:
        url = self.source.publisher(address)
        if url is None:
            return  # no publisher address: the endpoint stays waiting (approximate routing)
        task = asyncio.get_running_loop().create_task(
            self._run(address, url), name=f"poolgate-kv-events:{address}")
        self._tasks[address] = task

    async def _run(self, address: str, url: str) -> None:
        failing = False
        while True:
            try:
                await self._follow(address, url)
            except asyncio.CancelledError:
                raise
            except zmq.ZMQError as e:
                if not failing:
                    log.warning("KV events of %s (%s): %s; retrying every %gs", address, url, e,
                                _RETRY_DELAY)
                failing = True
            except Exception:
                # A bug must not end the endpoint's events for good: log it, start over.
                log.exception("KV events of %s (%s): unexpected error; restarting", address, url)
            await asyncio.sleep(_RETRY_DELAY)

    async def _follow(self, address: str, url: str) -> None:
        ctx = self._ctx
        assert ctx is not None
        tracker = self.trackers[address]
        replay_url = self.source.replay(address)
        loop = asyncio.get_running_loop()
        sock = ctx.socket(zmq.SUB)
        monitor: zmq.asyncio.Socket | None = None
        try:
            if url.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            # ZMTP heartbeats: a publisher whose host vanished (no FIN) counts as disconnected.
            sock.setsockopt(zmq.HEARTBEAT_IVL, _HEARTBEAT_MS)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3 * _HEARTBEAT_MS)
            sock.setsockopt(zmq.SUBSCRIBE, self.source.topic.encode())
            monitor = sock.get_monitor_socket(zmq.EVENT_DISCONNECTED)
            sock.connect(url)
            poller = zmq.asyncio.Poller()
            poller.register(sock, zmq.POLLIN)
            poller.register(monitor, zmq.POLLIN)
            while True:
                ready = dict(await poller.poll())
                if monitor in ready:
                    await monitor.recv_multipart()
                    tracker.disconnected()
                if sock not in ready:
                    continue
                frames = await sock.recv_multipart()
                if len(frames) != 3 or len(frames[1]) != 8:
                    tracker.stats.decode_errors += 1
                    continue
                seq = int.from_bytes(frames[1], "big")
                start = tracker.live(seq, frames[2], loop.time())
                if start is not None:
                    batches = (await self._replay(ctx, replay_url, start)
                               if replay_url is not None else None)
                    tracker.replayed(batches, loop.time())
        finally:
            if monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
                monitor.close(linger=0)
            sock.close(linger=0)

    async def _replay(self, ctx: zmq.asyncio.Context, url: str,
                      start: int) -> list[tuple[int, bytes]] | None:
        """Every batch from `start` the server still holds, or None when it did not answer
        completely within the replay timeout."""
        sock = ctx.socket(zmq.DEALER)
        out: list[tuple[int, bytes]] = []
        try:
            if url.startswith("tcp://["):
                sock.setsockopt(zmq.IPV6, 1)
            sock.connect(url)
            async with asyncio.timeout(self.source.replay_timeout):
                await sock.send_multipart([b"", start.to_bytes(8, "big")])
                while True:
                    # vLLM 0.32 answers (b"", topic, seq, payload) and ends with
                    # (b"", b"", -1, b""); earlier releases sent no topic frame.
                    frames = await sock.recv_multipart()
                    if len(frames) not in (3, 4):
                        return None
                    seq, payload = frames[-2], frames[-1]
                    if seq == END_SEQ:
                        return out
                    out.append((int.from_bytes(seq, "big"), payload))
        except TimeoutError:
            return None
        finally:
            sock.close(linger=0)


class KVEventsHub:
    """The gateway's KV-event subscribers and their indexes, one per distinct source."""

    def __init__(self) -> None:
        self._subscribers: dict[KVEventsSource, KVEventSubscriber] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._closing: set[asyncio.Task[None]] = set()

    def index_for(self, source: KVEventsSource) -> KVBlockIndex:
        """The index the events of `source` feed (created on first use; subscribed to the
        endpoints `set_targets` gives it)."""
        return self._subscriber(source).index

    def set_targets(self, targets: Mapping[KVEventsSource, Iterable[str]]) -> None:
        """Subscribe each source in `targets` to its endpoints; drop every other source."""
        for source, addresses in targets.items():
            self._subscriber(source).set_endpoints(addresses)
        for source in [s for s in self._subscribers if s not in targets]:
            subscriber = self._subscribers.pop(source)
            if subscriber.running:
                task = asyncio.get_running_loop().create_task(subscriber.close())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def start(self) -> None:
        """Open the ZMQ context and start every subscriber (inside a running event loop)."""
        if self._ctx is not None:
            return
        self._ctx = zmq.asyncio.Context()
        for subscriber in self._subscribers.values():
            subscriber.start(self._ctx)

    async def close(self) -> None:
        """Stop every subscriber and close the context (idempotent)."""
        for subscriber in self._subscribers.values():
            await subscriber.close()
        with contextlib.suppress(Exception):
            await asyncio.gather(*self._closing)
        if self._ctx is not None:
            self._ctx.destroy(linger=0)
            self._ctx = None

    def streams(self) -> Iterator[StreamTracker]:
        """Every subscribed endpoint's stream (for metrics and status)."""
        for subscriber in self._subscribers.values():
            yield from subscriber.trackers.values()

    def _subscriber(self, source: KVEventsSource) -> KVEventSubscriber:
        subscriber = self._subscribers.get(source)
        if subscriber is None:
            subscriber = self._subscribers[source] = KVEventSubscriber(source)
            if self._ctx is not None:
                subscriber.start(self._ctx)
        return subscriber

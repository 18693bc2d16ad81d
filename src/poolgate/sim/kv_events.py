"""vLLM's KV-cache events, published the way vLLM does it (`--kv-events-config`).

The events and their wire format live in `poolgate.core.kv_events` (the gateway reads them
too); the simulator sends vLLM 0.32's shape as captured from a real vLLM 0.32 CPU server
(tests/fixtures/vllm-kv-events.json): the batch a positional array, each event a map tagged
by `type`.

A PUB socket sends each batch as the multipart message `(topic, sequence, payload)`, the sequence
an 8-byte big-endian integer counting from 0. An optional ROUTER socket (the replay endpoint)
answers a request `(identity, b"", start sequence as 8 bytes)` with every buffered batch from
that sequence on, `(identity, b"", topic, sequence, payload)` each, then
`(identity, b"", b"", -1, b"")`.
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, fields

import msgpack
import zmq

from poolgate.core.kv_events import END_SEQ, KVEvent, event_to_wire


@dataclass(frozen=True)
class KVEventsConfig:
    """vLLM's `KVEventsConfig` (the JSON of `--kv-events-config`)."""

    enable_kv_cache_events: bool = False
    publisher: str | None = None
    endpoint: str = "tcp://*:5557"
    replay_endpoint: str | None = None
    buffer_steps: int = 10_000
    hwm: int = 100_000
    max_queue_size: int = 100_000
    topic: str = ""

    def __post_init__(self) -> None:
        if self.publisher not in (None, "null", "zmq"):
            raise ValueError(f"kv-events publisher must be 'null' or 'zmq', got {self.publisher!r}")
        for name in ("buffer_steps", "hwm", "max_queue_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"kv-events {name} must be at least 1")

    @property
    def active(self) -> bool:
        """Events are published (vLLM: enabled and the publisher is not "null")."""
        return self.enable_kv_cache_events and self.publisher != "null"


def parse_kv_events_config(text: str) -> KVEventsConfig:
    """Parse `--kv-events-config` JSON; unknown keys are an error, as in vLLM."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"--kv-events-config is not JSON: {e}") from None
    if not isinstance(data, dict):
        raise ValueError("--kv-events-config must be a JSON object")
    known = {f.name for f in fields(KVEventsConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"--kv-events-config: unknown key(s) {', '.join(unknown)}")
    try:
        return KVEventsConfig(**data)
    except TypeError as e:
        raise ValueError(f"--kv-events-config: {e}") from None


def offset_endpoint(endpoint: str | None, index: int) -> str | None:
    """Replica `index`'s endpoint: vLLM's per-data-parallel-rank rule (tcp port + index)."""
    if not endpoint or index == 0:
        return endpoint
    if endpoint.startswith("inproc://"):
        return f"{endpoint}_dp{index}"
    if endpoint.startswith("tcp://"):
        base, _, port = endpoint.rpartition(":")
        return f"{base}:{int(port) + index}"
    raise ValueError(f"kv-events endpoint {endpoint!r}: only tcp:// and inproc:// can be offset")


def replica_endpoints(config: KVEventsConfig, replicas: int) -> list[tuple[str, str | None]]:
    """(PUB, replay) endpoints of every replica; raises if two replicas would share a port."""
    out = [(offset_endpoint(config.endpoint, i) or config.endpoint,
            offset_endpoint(config.replay_endpoint, i)) for i in range(replicas)]
    seen = [e for pair in out for e in pair if e is not None]
    if len(set(seen)) != len(seen):
        raise ValueError(
            f"--kv-events-config: with {replicas} replicas, replica i uses endpoint port + i and "
            "replay_endpoint port + i; these ranges overlap, so space the two ports at least "
            f"{replicas} apart")
    return out


def _payload(ts: float, events: Sequence[KVEvent], rank: int) -> bytes:
    """A batch as vLLM 0.32 encodes it: `[ts, [event map, ...], rank]`."""
    packed = msgpack.packb([ts, [event_to_wire(e, array_like=False) for e in events], rank])
    assert isinstance(packed, bytes)
    return packed


def _binds(endpoint: str) -> bool:
    return ("*" in endpoint or "::" in endpoint or endpoint.startswith(("ipc://", "inproc://")))


class ZmqEventPublisher:
    """PUB socket plus optional replay ROUTER, served by one thread; batches are queued to it."""

    def __init__(self, config: KVEventsConfig, endpoint: str, replay_endpoint: str | None,
                 data_parallel_rank: int = 0) -> None:
        self._rank = data_parallel_rank
        self._topic = config.topic.encode()
        self._queue: queue.Queue[tuple[int, bytes] | None] = queue.Queue(
            maxsize=config.max_queue_size)
        self._buffer: deque[tuple[int, bytes]] = deque(maxlen=config.buffer_steps)
        self._seq = 0
        self.dropped = 0
        self._ctx = zmq.Context()
        self._pub = self._ctx.socket(zmq.PUB)
        self._replay: zmq.Socket[bytes] | None = None
        try:
            self._pub.set_hwm(config.hwm)
            # vLLM's rule: bind a wildcard (or ipc/inproc) address, connect to anything else.
            if _binds(endpoint):
                self._pub.bind(endpoint)
            else:
                self._pub.connect(endpoint)
            if replay_endpoint is not None:
                self._replay = self._ctx.socket(zmq.ROUTER)
                self._replay.bind(replay_endpoint)
        except zmq.ZMQError:
            self._close_sockets()
            raise
        self._thread = threading.Thread(target=self._serve, daemon=True, name="sim-kv-events")
        self._thread.start()

    def publish(self, events: Sequence[KVEvent]) -> None:
        """Queue one engine step's events as one batch.

        The sequence number is taken here, so a batch dropped on a full queue (counted in
        `dropped`) leaves a gap that subscribers see, rather than a silent loss.
        """
        if not events:
            return
        seq = self._seq
        self._seq += 1
        try:
            self._queue.put_nowait((seq, _payload(time.time(), events, self._rank)))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        """Send what is queued, stop the thread, close the sockets."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=1.0)
        self._thread.join(timeout=2.0)
        self._close_sockets()

    def _close_sockets(self) -> None:
        self._pub.close(linger=0)
        if self._replay is not None:
            self._replay.close(linger=0)
        self._ctx.term()

    def _serve(self) -> None:
        while True:
            if self._replay is not None and self._replay.poll(0):
                self._answer_replay()
            try:
                item = self._queue.get(timeout=0.02)
            except queue.Empty:
                continue
            if item is None:
                return
            seq, payload = item
            self._pub.send_multipart((self._topic, seq.to_bytes(8, "big"), payload))
            self._buffer.append((seq, payload))

    def _answer_replay(self) -> None:
        assert self._replay is not None
        frames = self._replay.recv_multipart()
        if len(frames) != 3:
            return  # not vLLM's request shape: (identity, empty delimiter, start sequence)
        identity, _, start = frames
        first = int.from_bytes(start, "big")
        for seq, payload in list(self._buffer):
            if seq >= first:
                self._replay.send_multipart(
                    (identity, b"", self._topic, seq.to_bytes(8, "big"), payload))
        self._replay.send_multipart((identity, b"", b"", END_SEQ, b""))

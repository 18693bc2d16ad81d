"""The shared in-flight view of several gateway replicas, as plain data (no I/O, no clock).

Each replica counts the requests it has in flight to each endpoint (exactly, at every pick).
Behind a load balancer that is a fraction of each endpoint's load, so every replica also
publishes its own counts at a fixed cadence and reads what the others published; the picker
then sees its own exact count plus the others' last published ones. This module holds the
policy of that exchange: the report format, which peers count (those whose report advanced
within the staleness bound, so a replica that died drops out by itself), the merged totals, and
when the view as a whole is too old to use (the store unreachable: local counts only).
`shared_load_sync.SharedLoadSync` runs it against a `LoadBoard` (`redis_load_board.py`).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from poolgate.state.kv_endpoints import KVEndpoint

# address -> (requests in flight, streamed ones among them awaiting their first token)
Counts = Mapping[str, tuple[int, int]]

DEFAULT_INTERVAL = 0.05
DEFAULT_STALENESS = 1.0
DEFAULT_KEY = "poolgate:gateway-load"
# The longest wait between attempts while the store does not answer.
MAX_BACKOFF = 2.0
REPORT_VERSION = 1


def default_replica_id() -> str:
    """`HOSTNAME-PID`: unique per process on a host, and per pod in Kubernetes."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class SharedLoadSettings:
    """Where and how often a replica exchanges its counts.

    `interval`: seconds between exchanges. `staleness`: a peer whose report has not advanced
    for this long no longer counts, and neither does the whole view when no exchange succeeded
    for this long. Raises ValueError naming the field when a value is unusable.
    """

    nodes: tuple[KVEndpoint, ...]
    replica_id: str
    interval: float = DEFAULT_INTERVAL
    staleness: float = DEFAULT_STALENESS
    key: str = DEFAULT_KEY

    def __post_init__(self) -> None:
        if not self.nodes:
            raise ValueError("nodes: at least one Redis node host:port is needed")
        if not self.replica_id or any(c.isspace() for c in self.replica_id):
            raise ValueError(f"replica_id: {self.replica_id!r} must be non-empty, without spaces")
        if not self.interval > 0:
            raise ValueError(f"interval: {self.interval:g} must be above 0 seconds")
        if not self.staleness >= 2 * self.interval:
            raise ValueError(f"staleness: {self.staleness:g} s must be at least twice the "
                             f"interval ({self.interval:g} s), or every peer would look dead "
                             "between two of its reports")
        if not self.key or any(c.isspace() for c in self.key):
            raise ValueError(f"key: {self.key!r} must be non-empty, without spaces")

    @property
    def timeout(self) -> float:
        """How long one exchange may take: a few intervals, at most half the staleness, so a
        slow store is noticed (and the view dropped) before a healthy view would go stale."""
        return min(max(0.1, 5 * self.interval), self.staleness / 2)

    @property
    def idle_interval(self) -> float:
        """How often a replica exchanges while it has nothing in flight, has nothing new to
        tell and sees nothing in flight elsewhere: often enough that its peers keep counting it
        live and its own view stays fresh for the next request."""
        return max(self.interval, self.staleness / 2)

    @property
    def forget_after(self) -> float:
        """A peer silent this long is deleted from the store (it died without withdrawing);
        the whole key expires this long after the last replica wrote it."""
        return max(30.0, 10 * self.staleness)

    def backoff(self, failures: int) -> float:
        """Seconds before the next attempt after `failures` consecutive failed ones."""
        if failures <= 0:
            return self.interval
        return min(MAX_BACKOFF, self.interval * 2.0 ** min(failures, 16))


def encode_report(seq: int, counts: Counts) -> bytes:
    """One replica's published state: a sequence number that advances every exchange (its
    liveness) and its non-zero counts."""
    return json.dumps({"v": REPORT_VERSION, "seq": seq,
                       "load": {a: [f, w] for a, (f, w) in counts.items()}},
                      separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class Report:
    """A decoded report."""

    seq: int
    counts: dict[str, tuple[int, int]]


def decode_report(raw: bytes | str) -> Report | None:
    """The report in `raw`, or None when it is not one (another program's value, a newer
    version): such a field is ignored, not trusted."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("v") != REPORT_VERSION:
        return None
    seq, load = data.get("seq"), data.get("load")
    if not isinstance(seq, int) or isinstance(seq, bool) or not isinstance(load, dict):
        return None
    counts: dict[str, tuple[int, int]] = {}
    for address, pair in load.items():
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                           for n in pair)):
            return None
        counts[address] = (pair[0], pair[1])
    return Report(seq, counts)


@dataclass(slots=True)
class _Peer:
    seq: int
    counts: dict[str, tuple[int, int]]
    since: float  # when this replica first saw `seq`
    advanced: bool = False  # seen a report after the first one: it is alive


@dataclass(slots=True)
class PeerView:
    """What the other replicas published, as this replica saw it at each exchange.

    A peer counts once its report has advanced at least once (a report left by a replica that
    died is never counted by a replica that starts after it) and while its current report is
    at most `staleness` old by this replica's clock (no clocks are compared across machines).
    The view as a whole counts while the last exchange is at most `staleness` old.
    """

    replica_id: str
    staleness: float
    forget_after: float
    peers: dict[str, _Peer] = field(default_factory=dict)
    synced_at: float | None = None
    bad_reports: int = 0  # fields that were not reports, over the view's life

    def update(self, published: Mapping[str, bytes], now: float) -> None:
        """Take in the whole published table as read at `now` (field = replica id)."""
        peers = self.peers
        for replica, raw in published.items():
            if replica == self.replica_id:
                continue
            report = decode_report(raw)
            if report is None:
                self.bad_reports += 1
                continue
            peer = peers.get(replica)
            if peer is None:
                peers[replica] = _Peer(report.seq, report.counts, now)
            elif report.seq != peer.seq:
                peer.seq, peer.counts, peer.since, peer.advanced = (report.seq, report.counts,
                                                                    now, True)
        for replica in [r for r in peers if r not in published]:
            del peers[replica]  # withdrawn or forgotten
        self.synced_at = now

    def fresh(self, now: float) -> bool:
        """Whether the last exchange is recent enough to use the view."""
        return self.synced_at is not None and now - self.synced_at <= self.staleness

    def age(self, now: float) -> float | None:
        """Seconds since the last successful exchange (None before the first)."""
        return None if self.synced_at is None else now - self.synced_at

    def live(self, now: float) -> list[str]:
        """The peers that count at `now` (empty when the view is not fresh)."""
        if not self.fresh(now):
            return []
        limit = now - self.staleness
        return [r for r, p in self.peers.items() if p.advanced and p.since >= limit]

    def totals(self, now: float) -> dict[str, tuple[int, int]]:
        """Per endpoint, the sum of the live peers' counts: what to add to this replica's
        own. Empty when the view is not fresh: then only local counts are used."""
        out: dict[str, tuple[int, int]] = {}
        peers = self.peers
        for replica in self.live(now):
            for address, (f, w) in peers[replica].counts.items():
                have = out.get(address)
                out[address] = (f, w) if have is None else (have[0] + f, have[1] + w)
        return out

    def anything_in_flight(self) -> bool:
        """Whether any peer's last report (counted yet or not) has requests in flight."""
        return any(p.counts for p in self.peers.values())

    def forgotten(self, now: float) -> list[str]:
        """Peers silent for `forget_after`: their fields are deleted at the next exchange."""
        limit = now - self.forget_after
        return [r for r, p in self.peers.items() if p.since < limit]


@dataclass(slots=True)
class LinkState:
    """Whether the store answered the last exchange, for the gauge and the log: `succeeded`
    and `failed` return True only on a transition, so an outage logs one line, not one per
    attempt."""

    up: bool | None = None  # None: no exchange tried yet
    failures: int = 0  # consecutive failed exchanges

    def succeeded(self) -> bool:
        """Record a successful exchange; True when the store was down (or never reached)."""
        changed = self.up is not True
        self.up, self.failures = True, 0
        return changed

    def failed(self) -> bool:
        """Record a failed exchange; True when the store was up (or never reached)."""
        changed = self.up is not False
        self.up = False
        self.failures += 1
        return changed

"""Leader election over a `coordination.k8s.io/v1` Lease, so only one operator reconciles.

As client-go does it: a candidate reads the Lease every `retry_period`; it takes the Lease when
nobody holds it or the holder has not renewed it for `lease_duration` (measured on the
candidate's own monotonic clock from when it last saw the record change, so clock skew between
pods does not matter); the holder renews it every `retry_period` and steps down when it could
not renew for `renew_deadline`. Writes carry the `resourceVersion` read, so of two candidates
racing for the same record only one write succeeds (the other gets 409 Conflict).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from poolgate._aio import cancel_and_wait
from poolgate.kube.client import KubeClient, KubeError

log = logging.getLogger("poolgate.leader")

LEASES = "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"


class Role(enum.Enum):
    """Whether this candidate currently holds the Lease."""

    FOLLOWER = "follower"
    LEADER = "leader"


class Outcome(enum.Enum):
    """What one round of reading (and maybe writing) the Lease came to."""

    WROTE = "wrote"          # acquired or renewed
    HELD = "held"            # someone else holds an unexpired Lease
    FAILED = "failed"        # the API refused or could not be reached (or lost a race)


@dataclass(frozen=True)
class LeaseTiming:
    """client-go's defaults: 15 s lease, 10 s renew deadline, 2 s retry period."""

    lease_duration: float = 15.0
    renew_deadline: float = 10.0
    retry_period: float = 2.0


def micro_time(now: datetime) -> str:
    """A Kubernetes MicroTime (`2006-01-02T15:04:05.000000Z`)."""
    return now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class LeaderElector:
    """The election's state for one candidate; pure (callers pass `now` and the wall time)."""

    identity: str
    timing: LeaseTiming = field(default_factory=LeaseTiming)
    role: Role = Role.FOLLOWER
    _observed: dict[str, Any] | None = None
    _observed_at: float = 0.0
    _renewed_at: float = 0.0

    def next_spec(self, lease: dict[str, Any] | None, now: float,
                  wall: str) -> dict[str, Any] | None:
        """The Lease spec to write (acquire or renew), or None to leave it to its holder."""
        spec: dict[str, Any] = (lease or {}).get("spec") or {}
        if spec != self._observed:
            self._observed, self._observed_at = dict(spec), now
        holder = spec.get("holderIdentity")
        duration = max(1, round(self.timing.lease_duration))
        if lease is not None and holder == self.identity:
            return {**spec, "renewTime": wall, "leaseDurationSeconds": duration}
        held_for = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
        if lease is not None and holder and now < self._observed_at + held_for:
            return None
        transitions = int(spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        return {"holderIdentity": self.identity, "leaseDurationSeconds": duration,
                "acquireTime": wall, "renewTime": wall, "leaseTransitions": transitions}

    def observe(self, outcome: Outcome, now: float) -> Role:
        """Move to the role the round's outcome implies (the only place `role` changes)."""
        if outcome is Outcome.WROTE:
            self.role, self._renewed_at = Role.LEADER, now
        elif outcome is Outcome.HELD:
            self.role = Role.FOLLOWER
        elif self.role is Role.LEADER and now - self._renewed_at >= self.timing.renew_deadline:
            self.role = Role.FOLLOWER  # could not renew in time: another may take it over
        return self.role

    def is_leader(self) -> bool:
        return self.role is Role.LEADER

    def __repr__(self) -> str:
        return f"LeaderElector({self.identity!r}, {self.role.value})"


class LeaseElection:
    """Runs `lead()` only while this candidate holds the Lease `namespace/name`."""

    def __init__(self, client: KubeClient, namespace: str, name: str,
                 elector: LeaderElector) -> None:
        self.client = client
        self.collection = LEASES.format(namespace=namespace)
        self.path = f"{self.collection}/{name}"
        self.namespace, self.name = namespace, name
        self.elector = elector

    async def round(self) -> Outcome:
        """Read the Lease and acquire or renew it if due."""
        try:
            lease = await self.client.get(self.path)
            spec = self.elector.next_spec(lease, time.monotonic(), micro_time(datetime.now(UTC)))
            if spec is None:
                return Outcome.HELD
            meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "spec": spec}
            if lease is None:
                await self.client.create(self.collection, {**body, "metadata": meta})
            else:
                meta["resourceVersion"] = lease["metadata"]["resourceVersion"]
                await self.client.replace(self.path, {**body, "metadata": meta})
        except KubeError as exc:
            if exc.status == 409:
                log.debug("lease %s: lost a race: %s", self.name, exc)
            else:
                log.warning("lease %s: %s", self.name, exc)
            return Outcome.FAILED
        return Outcome.WROTE

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Take part in the election forever; `lead()` is cancelled when leadership is lost."""
        task: asyncio.Task[None] | None = None
        try:
            while True:
                was_leader = self.elector.is_leader()
                outcome = await self.round()
                if self.elector.observe(outcome, time.monotonic()) is Role.LEADER:
                    if not was_leader:
                        log.info("became leader as %s (lease %s/%s)", self.elector.identity,
                                 self.namespace, self.name)
                    if task is None:
                        task = asyncio.create_task(_as_coroutine(lead))
                elif task is not None:
                    log.warning("lost leadership (%s); stopping reconciles", self.elector.identity)
                    await cancel_and_wait((task,))
                    task = None
                if task is not None and task.done():
                    task.result()  # the controller never returns; if it raised, so do we
                await asyncio.sleep(self.elector.timing.retry_period)
        finally:
            if task is not None:
                await cancel_and_wait((task,))


async def _as_coroutine(lead: Callable[[], Awaitable[None]]) -> None:
    await lead()

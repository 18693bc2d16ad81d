"""Active health state per endpoint: consecutive probe results against thresholds.

Pure and sync: the prober (`health_checker.ActiveHealthChecker`) feeds results in with `record`;
the proxy asks `unhealthy(...)`. An endpoint nobody has probed yet counts as healthy. The first
result decides at once (as Envoy does at start-up: a host is healthy after its first passing
check, unhealthy after its first failing one); after that a healthy endpoint turns unhealthy
after `unhealthy_threshold` consecutive failures and back after `healthy_threshold` passes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class HealthRecord:
    """One endpoint's probe history (owned by `HealthTracker`)."""

    healthy: bool = True
    checked: bool = False
    passes: int = 0
    failures: int = 0
    last_error: str | None = None
    changed_at: float | None = None


class HealthTracker:
    """Healthy / unhealthy per probe target (`host:port` of the endpoint)."""

    def __init__(self, on_pass: Callable[[str], None] | None = None) -> None:
        self._records: dict[str, HealthRecord] = {}
        self._unhealthy: set[str] = set()
        self._on_pass = on_pass  # told of every passing probe (the endpoint is reachable)

    def record(self, address: str, ok: bool, now: float, *, healthy_threshold: int = 1,
               unhealthy_threshold: int = 3, error: str | None = None) -> bool:
        """Account one probe of `address`; returns True when its health changed."""
        rec = self._records.setdefault(address, HealthRecord())
        first = not rec.checked
        rec.checked = True
        if ok:
            if self._on_pass is not None:
                self._on_pass(address)
            rec.passes += 1
            rec.failures = 0
            rec.last_error = None
            flip = not rec.healthy and (first or rec.passes >= healthy_threshold)
        else:
            rec.failures += 1
            rec.passes = 0
            rec.last_error = error
            flip = rec.healthy and (first or rec.failures >= unhealthy_threshold)
        if flip:
            rec.healthy = not rec.healthy
            rec.changed_at = now
            if rec.healthy:
                self._unhealthy.discard(address)
            else:
                self._unhealthy.add(address)
        return flip

    def is_healthy(self, address: str) -> bool:
        """False only for an endpoint whose probes say so."""
        return address not in self._unhealthy

    def checked(self, address: str) -> bool:
        """Whether `address` has had at least one probe result."""
        rec = self._records.get(address)
        return rec is not None and rec.checked

    def get(self, address: str) -> HealthRecord | None:
        """The record of `address` (for the status page)."""
        return self._records.get(address)

    @property
    def unhealthy(self) -> frozenset[str]:
        """Every endpoint currently failing its active check."""
        return frozenset(self._unhealthy)

    def unhealthy_set(self) -> set[str]:
        """The live set of failing endpoints (read-only use; no copy on the hot path)."""
        return self._unhealthy

    def retain(self, addresses: Iterable[str]) -> None:
        """Forget endpoints that are no longer checked (they count as healthy again)."""
        keep = set(addresses)
        for address in [a for a in self._records if a not in keep]:
            del self._records[address]
            self._unhealthy.discard(address)

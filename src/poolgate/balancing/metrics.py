"""Prometheus series of multi-cluster balancing and health, on the gateway's registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class BalancingMetrics:
    """Balancing decisions per pool and outlier ejections per backendRef."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.decisions = Counter(
            "poolgate_balancing_decisions",
            "Region choices of the GCPBackendPolicy balancing mode, by pool, mode, chosen region "
            "(empty when spread), reason and whether it was a dry run (not applied).",
            ["pool", "mode", "region", "reason", "dry_run"], registry=registry,
        )
        self.ejections = Counter(
            "poolgate_outlier_ejections",
            "Endpoints ejected by passive outlier detection, by backend and reason.",
            ["backend", "reason"], registry=registry,
        )
        self._decision_children: dict[tuple[str, str, str, str, str], Counter] = {}

    def count_decision(self, pool: str, mode: str, region: str | None, reason: str,
                       dry_run: bool) -> None:
        """One decision (cached label children: this runs on every request)."""
        key = (pool, mode, region or "", reason, "true" if dry_run else "false")
        child = self._decision_children.get(key)
        if child is None:
            child = self._decision_children[key] = self.decisions.labels(*key)
        child.inc()

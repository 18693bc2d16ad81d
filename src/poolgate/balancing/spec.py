"""A GCPBackendPolicy as balancing applies it to one pool."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

BalancingMode = Literal["CUSTOM_METRICS", "IN_FLIGHT"]


@dataclass(frozen=True, slots=True)
class BackendPolicySpec:
    """A GCPBackendPolicy as it applies to one pool (imported or local).

    `mode` None balances as a single-cluster pool (no region preference, no cap). With
    `CUSTOM_METRICS`, `max_utilization` (0..1) is the target of the metric `metric` (the
    `gke.named_metrics.<exportName>` name) read from the model server's `source_metric`; with
    `IN_FLIGHT`, `max_in_flight` caps the gateway's requests in flight per endpoint. `dry_run`
    computes and reports the decision without steering. `timeout` is `timeoutSec` in seconds.
    """

    namespace: str
    name: str
    mode: BalancingMode | None = None
    metric: str | None = None
    source_metric: str | None = None
    max_utilization: float = 0.8
    max_in_flight: int | None = None
    dry_run: bool = False
    timeout: float | None = None
    traffic_duration: str | None = None

    @property
    def key(self) -> str:
        """`namespace/name` of the GCPBackendPolicy."""
        return f"{self.namespace}/{self.name}"

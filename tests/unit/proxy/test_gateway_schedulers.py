"""Which scheduler a pool gets in the gateway: profile by annotation or flag, metrics staleness."""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

import pytest

from poolgate.config.build import PROFILE_NAMES, load_snapshot
from poolgate.observability.access_log import AccessLog
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.gateway import Gateway, GatewayOptions
from poolgate.scheduling.config import SchedulerConfig

MANIFESTS = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: plain
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp, port: {number: 9002}}
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: tuned
  annotations: {poolgate.dev/scheduler-profile: mine}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp, port: {number: 9002}}
"""

MINE = [{"type": "queue-scorer"}]


def _gateway(tmp_path: Path, custom: SchedulerConfig) -> Gateway:
    path = tmp_path / "pools.yaml"
    path.write_text(MANIFESTS)
    result = load_snapshot([path], profiles=PROFILE_NAMES | {"mine"})
    assert result.snapshot is not None, result.problems
    options = GatewayOptions(staleness=7.5, custom_profiles=MappingProxyType({"mine": custom}))
    return Gateway(result.snapshot, options, GatewayMetrics(), AccessLog(enabled=False))


@pytest.mark.parametrize(("custom", "tuned_staleness"), [
    pytest.param(SchedulerConfig(profile="mine", plugins=MINE), 7.5, id="gateway-staleness"),
    pytest.param(SchedulerConfig(profile="mine", plugins=MINE, staleness=3.0), 3.0,
                 id="profile-sets-its-own"),
])
def test_schedulers_follow_the_profile_and_metrics_staleness(
        tmp_path: Path, custom: SchedulerConfig, tuned_staleness: float) -> None:
    gateway = _gateway(tmp_path, custom)
    pools = {p.name: p for p in gateway.snapshot.pools.values()}
    plain, tuned = gateway.scheduler(pools["plain"]), gateway.scheduler(pools["tuned"])
    assert plain.profile.name == "default" and plain.staleness == 7.5
    assert tuned.profile.name == "mine" and tuned.staleness == tuned_staleness
    assert [s.scorer.typed_name.type for s in tuned.profile.scorers] == ["queue-scorer"]

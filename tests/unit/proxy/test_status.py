"""The admin views of `poolgate.proxy.status`: readiness and the `/status` document, over a real
`Gateway` with in-memory upstreams."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.datalayer.signals import Signals
from poolgate.proxy.gateway import Gateway
from poolgate.proxy.status import gateway_status, not_ready_reason
from tests.unit.proxy._fakes import FakeUpstreams, gateway, snapshot

A, B = "10.0.0.1:8000", "10.0.0.2:8000"
LISTENING = {80: 18080}


def _gateway(tmp_path: Path, *, scraped: tuple[str, ...] = (A, B)) -> Gateway:
    gw, _ = gateway(snapshot(tmp_path), FakeUpstreams({}))
    for address in scraped:
        gw.store.update(address, Signals(waiting=0, running=1, kv_usage=0.25))
    return gw


@pytest.mark.parametrize(("draining", "bound", "scraped", "checked", "unhealthy", "reason"), [
    pytest.param(True, LISTENING, (A, B), (), (), "draining", id="draining-first"),
    pytest.param(False, {}, (A, B), (), (), "no listener", id="no-listener"),
    pytest.param(False, LISTENING, (A,), (), (), f"waiting for the first metrics scrape of {B}",
                 id="unscraped-endpoint"),
    pytest.param(False, LISTENING, (A, B), (A,), (), f"waiting for the first health check of {A}",
                 id="unchecked-target"),
    pytest.param(False, LISTENING, (A, B), (), (A, B),
                 "no route has a backend with a healthy endpoint", id="all-unhealthy"),
    pytest.param(False, LISTENING, (A, B), (), (A,), None, id="one-healthy"),
])
async def test_not_ready_reason(tmp_path: Path, draining: bool, bound: dict[int, int],
                                scraped: tuple[str, ...], checked: tuple[str, ...],
                                unhealthy: tuple[str, ...], reason: str | None) -> None:
    gw = _gateway(tmp_path, scraped=scraped)
    for address in unhealthy:
        gw.health.record(address, False, 0.0)
    assert not_ready_reason(gw, draining=draining, bound_ports=bound,
                            health_targets=checked) == reason


async def test_the_status_document_shows_listeners_pools_and_endpoints(tmp_path: Path) -> None:
    gw = _gateway(tmp_path, scraped=(A,))
    status = gateway_status(gw, bound_ports=LISTENING, staleness=2.0, now=0.0)
    assert status["listeners"] == [{"name": "http", "port": 80, "bound_port": 18080}]
    [pool] = status["pools"].values()
    assert [ep["address"] for ep in pool["endpoints"]] == [A, B]
    assert [ep["in_flight"] for ep in pool["endpoints"]] == [0, 0]
    assert [ep["metrics_fresh"] for ep in pool["endpoints"]] == [True, False]
    assert status["active_requests"] == 0
    assert set(status) == {"listeners", "pools", "ejected", "active_requests"}


async def test_a_pools_gcpbackendpolicy_shows_its_balancing_settings(tmp_path: Path) -> None:
    from poolgate.config.build import load_snapshot
    from tests.unit.proxy._fakes import GATEWAY

    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY + """\
---
apiVersion: networking.gke.io/v1
kind: GCPBackendPolicy
metadata: {name: balancing, namespace: default}
spec:
  targetRef: {group: inference.networking.k8s.io, kind: InferencePool, name: pool}
  default:
    timeoutSec: 100
    balancingMode: IN_FLIGHT
    maxInFlightRequestsPerEndpoint: 4
    trafficDuration: LONG
""")
    result = load_snapshot([path])
    assert result.snapshot is not None, [str(p) for p in result.problems]
    gw, _ = gateway(result.snapshot, FakeUpstreams({}))
    [pool] = gateway_status(gw, bound_ports=LISTENING, staleness=2.0, now=0.0)["pools"].values()
    assert pool["balancing"] == {"policy": "default/balancing", "mode": "IN_FLIGHT",
                                 "max_utilization": None, "max_in_flight": 4, "dry_run": False,
                                 "timeout_sec": 100.0, "traffic_duration": "LONG"}

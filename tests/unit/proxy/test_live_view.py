"""The live view behind the status page (`proxy/live_view.py`) and the admin routes that serve
the page and its document (`proxy/admin.py`), over a real `Gateway` with in-memory upstreams."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

from poolgate.config.build import load_snapshot
from poolgate.datalayer.health_checker import ActiveHealthChecker
from poolgate.datalayer.signals import Signals
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.admin import PAGE_ASSETS, AdminServer
from poolgate.proxy.gateway import Gateway
from poolgate.proxy.live_view import _state, live_document
from tests.support.processes import free_port
from tests.unit.proxy._fakes import GATEWAY, Answer, FakeResponder, FakeUpstreams, gateway

A, B, C, D = "10.0.0.1:8000", "10.0.0.2:8000", "10.0.0.3:8000", "10.0.0.4:8000"
PLACED = GATEWAY.replace("addresses: [10.0.0.1:8000, 10.0.0.2:8000]", f"""addresses:
  - {{address: "{A}", region: us-east, cluster: east-1}}
  - {{address: "{B}", region: us-east, cluster: east-2}}
  - {{address: "{C}", region: eu-west, cluster: west-1}}
  - {{address: "{D}", region: eu-west, cluster: west-1}}""")
REQUEST = {"model": "llama", "prompt": "hello", "max_tokens": 3, "stream": True}


def _gateway(tmp_path: Path, upstreams: FakeUpstreams | None = None) -> Gateway:
    path = tmp_path / "gw.yaml"
    path.write_text(PLACED)
    result = load_snapshot([path])
    assert result.snapshot is not None, [str(p) for p in result.problems]
    gw, _ = gateway(result.snapshot, upstreams or FakeUpstreams({}))
    return gw


def _document(gw: Gateway, now: float, **kw: Any) -> dict[str, Any]:
    return live_document(gw, bound_ports={80: 18080}, staleness=2.0, now=now, not_ready=None,
                         **kw)


async def test_each_endpoint_shows_its_live_signals_placement_and_state(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    now = gw.now()
    gw.store.update(A, Signals(waiting=3, running=5, kv_usage=0.42, max_lora=4,
                               lora_running=frozenset({"sql-lora"}),
                               lora_waiting=frozenset({"tweet"}), scraped_at=now))
    gw.store.update(B, Signals(waiting=0, running=0, kv_usage=0.1, scraped_at=now - 30))
    gw.store.record_failure(B, "connection refused", now - 1)
    gw.store.mark_unreachable(C)
    gw.health.record(D, False, now, error="HTTP 503")
    gw.store.begin(A, streamed=True)
    doc = _document(gw, now)
    [pool] = doc["pools"]
    by_address = {ep["address"]: ep for ep in pool["endpoints"]}
    a = by_address[A]
    assert (a["state"], a["waiting"], a["running"], a["kv_usage"]) == ("ok", 3, 5, 0.42)
    assert (a["lora_running"], a["lora_waiting"], a["max_lora"]) == (["sql-lora"], ["tweet"], 4)
    assert (a["in_flight"], a["awaiting_first_token"]) == (1, 1)
    assert (a["region"], a["cluster"], a["metrics_fresh"]) == ("us-east", "east-1", True)
    b = by_address[B]
    assert (b["state"], b["waiting"], b["metrics_fresh"]) == ("stale", None, False)
    assert b["metrics_age"] == pytest.approx(30)
    assert b["last_error"] == "scrape: connection refused"
    assert by_address[C]["state"] == "unreachable"
    assert by_address[D]["state"] == "unhealthy"
    assert by_address[D]["last_error"] == "health check: HTTP 503"
    assert doc["ready"] is True and doc["version"] == 1
    assert doc["listeners"] == [{"name": "http", "port": 80, "bound_port": 18080}]


@pytest.mark.parametrize(("fields", "scraped", "state"), [
    pytest.param({"ejected": True, "healthy": False}, True, "ejected", id="ejected-first"),
    pytest.param({"healthy": False, "unreachable": True}, True, "unhealthy", id="unhealthy"),
    pytest.param({"unreachable": True}, True, "unreachable", id="unreachable"),
    pytest.param({"metrics_fresh": False}, True, "stale", id="stale"),
    pytest.param({"metrics_fresh": False}, False, "unknown", id="never-scraped"),
    pytest.param({}, True, "ok", id="ok"),
])
def test_an_endpoint_s_state_is_the_worst_thing_known_about_it(
        fields: dict[str, Any], scraped: bool, state: str) -> None:
    ep = {"ejected": False, "healthy": None, "unreachable": False, "metrics_fresh": True}
    assert _state({**ep, **fields}, scraped=scraped) == state


async def test_requests_show_as_picks_traffic_and_region_shares(tmp_path: Path) -> None:
    upstreams = FakeUpstreams({a: [Answer()] for a in (A, B, C, D)})
    gw = _gateway(tmp_path, upstreams)
    for address in (A, B, C, D):
        gw.store.update(address, Signals(waiting=0, running=0, kv_usage=0.1,
                                         scraped_at=gw.now()))
    for _ in range(8):
        await gw.handle(FakeResponder(REQUEST), 80)
    doc = _document(gw, gw.now())
    [pool] = doc["pools"]
    assert pool["picks_total"] == 8 and len(pool["picks"]) == 8
    newest = pool["picks"][0]
    assert newest["endpoint"] == upstreams.sent[-1][0]
    assert newest["model"] == "llama" and newest["candidates"] == 4
    assert newest["decided_by"] and newest["reason"]
    assert doc["summary"]["last_10s"]["requests"] == 8
    assert sum(doc["traffic"]["requests"]) == 8
    # The fake upstream answers JSON, not an event stream: no time to first token to chart.
    assert doc["summary"]["last_60s"]["ttft_p50"] is None
    served = {ep["address"]: ep["served_60s"] for ep in pool["endpoints"]}
    assert sum(served.values()) == 8
    regions = {r["region"]: r for r in pool["regions"]}
    assert set(regions) == {"us-east", "eu-west"}
    assert regions["us-east"]["served_60s"] == served[A] + served[B]
    assert regions["us-east"]["clusters"] == ["east-1", "east-2"]
    assert sum(r["share"] for r in pool["regions"]) == pytest.approx(1.0)
    [backend] = pool["backends"]
    assert backend["breaker"]["state"] == "closed"
    assert backend["breaker"]["active"] == 0
    assert doc["backends"] == []  # no Service backendRef


async def test_the_traffic_history_can_be_shortened(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    doc = _document(gw, gw.now(), seconds=30)
    assert len(doc["traffic"]["requests"]) == 30
    assert len(_document(gw, gw.now())["traffic"]["requests"]) == gw.live.seconds


async def test_a_pool_without_placement_has_no_regions(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text(GATEWAY)
    result = load_snapshot([path])
    assert result.snapshot is not None
    gw, _ = gateway(result.snapshot, FakeUpstreams({}))
    [pool] = _document(gw, gw.now())["pools"]
    assert pool["regions"] == []
    assert pool["picks"] == [] and pool["picks_total"] == 0


# -- the admin routes ----------------------------------------------------------------------------

async def _admin(gw: Gateway) -> tuple[AdminServer, str]:
    port = free_port()
    listeners = SimpleNamespace(bound_ports={80: 18080})
    server = AdminServer("127.0.0.1", port, gateway=gw, metrics=GatewayMetrics(),
                         listeners=listeners,  # type: ignore[arg-type]
                         health_checker=ActiveHealthChecker(gw.health), staleness=2.0)
    await server.start()
    return server, f"http://127.0.0.1:{port}"


async def test_the_admin_listener_serves_the_page_its_assets_and_the_document(
        tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    server, url = await _admin(gw)
    try:
        async with aiohttp.ClientSession() as s:
            async with s.get(f"{url}/") as r:
                page = await r.text()
                assert r.status == 200 and r.content_type == "text/html"
                assert "default-src 'none'" in r.headers["Content-Security-Policy"]
            # Everything the page loads is relative to the admin listener: no other host.
            assert 'src="static/app.js"' in page and 'href="static/app.css"' in page
            assert "http://" not in page and "https://" not in page
            for name, ctype in PAGE_ASSETS.items():
                if name == "index.html":
                    continue
                async with s.get(f"{url}/static/{name}") as r:
                    body = await r.text()
                    assert (r.status, r.content_type) == (200, ctype)
                    assert "https://" not in body and "http://" not in body.replace(
                        "http://www.w3.org/2000/svg", "")
            for missing in ("index.html", "nope.js", "..%2fadmin.py"):
                async with s.get(f"{url}/static/{missing}") as r:
                    assert r.status == 404
            async with s.get(f"{url}/api/live?seconds=10") as r:
                doc = await r.json()
                assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
            assert len(doc["traffic"]["requests"]) == 10
            assert doc["ready"] is False  # nothing scraped yet
            assert doc["not_ready"].startswith("waiting for the first metrics scrape")
            async with s.get(f"{url}/api/live?seconds=many") as r:
                assert r.status == 400
    finally:
        await server.close()

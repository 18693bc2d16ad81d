"""The gateway's KV-event hub: subscribed to the pools whose profile has a precise prefix
scorer, followed across swaps, feeding the picker, rendered in /metrics (no sockets: the hub is
not started, the index is fed directly)."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from poolgate.config.build import load_snapshot
from poolgate.core.kv_events import BlockStored
from poolgate.core.sim_tokens import encode
from poolgate.observability.access_log import AccessLog
from poolgate.observability.metrics import GatewayMetrics
from poolgate.proxy.gateway import Gateway, GatewayOptions
from poolgate.scheduling.config import SchedulerConfig
from tests.unit.proxy._fakes import GATEWAY, Answer, FakeResponder, FakeUpstreams, snapshot

A, B = "10.0.0.1:8000", "10.0.0.2:8000"
PRECISE = SchedulerConfig.from_dict({"profile": "precise", "plugins": [
    {"type": "precise-prefix-cache-scorer", "weight": 4,
     "params": {"tokenProcessorConfig": {"blockSize": 4},
                "kvEventsConfig": {"podDiscoveryConfig": {"socketPort": 7557}}}},
    {"type": "in-flight-scorer"},
]})
PROMPT = "a long shared system prompt that several requests start with " * 3


def _gateway(tmp_path: Path, profile: str = "precise") -> Gateway:
    options = GatewayOptions(seed=1, scheduler_profile=profile,
                             custom_profiles={"precise": PRECISE})
    return Gateway(snapshot(tmp_path), options, GatewayMetrics(), AccessLog.open("off"))


def _states(gw: Gateway) -> dict[str, float]:
    body, _ = gw.metrics.exposition()
    for family in text_string_to_metric_families(body.decode()):
        if family.name == "poolgate_kv_events_endpoints":
            return {s.labels["state"]: s.value for s in family.samples}
    raise AssertionError("no poolgate_kv_events_endpoints")


def test_pools_with_the_scorer_are_subscribed_and_followed(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    assert sorted(s.address for s in gw.kv_events.streams()) == [A, B]
    assert _states(gw) == {"waiting": 2, "consistent": 0, "degraded": 0}
    plain = _gateway(tmp_path / "plain", profile="default")
    assert list(plain.kv_events.streams()) == []
    assert _states(plain) == {"waiting": 0, "consistent": 0, "degraded": 0}


async def test_a_swap_to_a_profile_without_it_drops_the_subscriptions(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    path = tmp_path / "next" / "gw.yaml"
    path.parent.mkdir()
    path.write_text(GATEWAY.replace(
        "metadata: {name: pool, namespace: default}",
        "metadata: {name: pool, namespace: default, annotations: "
        "{poolgate.dev/scheduler-profile: default}}"))
    result = load_snapshot([path])
    assert result.snapshot is not None
    gw.swap(result.snapshot)
    assert list(gw.kv_events.streams()) == []


async def test_the_picker_follows_what_the_events_say(tmp_path: Path) -> None:
    gw = _gateway(tmp_path)
    upstreams = FakeUpstreams({A: [Answer()], B: [Answer()]})
    gw.upstreams = upstreams  # type: ignore[assignment]
    (index,) = {s.index for s in gw.kv_events.streams()}
    ids = encode(PROMPT)
    n = len(ids) // 4
    # B's server cached the prompt for a request that never came through this gateway.
    index.apply(B, [BlockStored(list(range(n)), None, ids[: n * 4], 4)])
    index.trust_from(B, 0.0)
    index.trust_from(A, 0.0)
    for _ in range(3):
        await gw.handle(FakeResponder({"model": "m", "prompt": PROMPT + " question?"}), 80)
    assert [address for address, _ in upstreams.sent] == [B, B, B]

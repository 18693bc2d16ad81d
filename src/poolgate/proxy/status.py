"""What the gateway says about itself on the admin listener: why it is not ready yet (`/readyz`)
and the state of its listeners, pools and endpoints (`/status`). Sync, read-only views of the
`Gateway`'s public state; the caller passes the clock reading."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from poolgate.config.snapshot import Snapshot
from poolgate.proxy.gateway import Gateway


def not_ready_reason(gateway: Gateway, *, draining: bool, bound_ports: Mapping[int, int],
                     health_targets: Collection[str]) -> str | None:
    """Why the gateway cannot serve yet, or None when at least one route has a backend.
    `bound_ports`: the open listeners; `health_targets`: the addresses actively checked."""
    if draining:
        return "draining"
    snap = gateway.snapshot
    if not bound_ports:
        return "no listener"
    # Until every pool endpoint has been scraped once (successfully or not) the picker and
    # the saturation check know nothing, and unknown metrics count as saturated.
    store = gateway.store
    for address in gateway.pool_addresses():
        state = store.get(address)
        if state is None or state.scrapes_ok + state.scrapes_failed == 0:
            return f"waiting for the first metrics scrape of {address}"
    health = gateway.health
    for address in health_targets:
        if not health.checked(address):
            return f"waiting for the first health check of {address}"
    if snap.has_address_backends():
        return None
    if not any(pool.endpoints for pool in snap.pools.values()):
        return "no InferencePool has an endpoint"
    # Ready while some route can send somewhere: a pool backend with a healthy endpoint.
    pools = [b.pool for r in snap.routes for rule in r.rules for b in rule.backends
             if b.pool is not None and b.weight > 0]
    if not pools:
        return None  # no route sends to a pool: nothing to judge health by
    for pool in pools:
        if any(health.is_healthy(a) for a in pool.addresses):
            return None
    return "no route has a backend with a healthy endpoint"


def gateway_status(gateway: Gateway, *, bound_ports: Mapping[int, int], staleness: float,
                   now: float) -> dict[str, Any]:
    """The `/status` document: listeners and their bound ports, each pool's endpoints with their
    live signals, placement and checks, the endpoints ejected now, the requests running.
    `staleness`: metrics older than this many seconds count as unknown."""
    snap = gateway.snapshot
    return {
        "listeners": [
            {"name": lst.name, "port": lst.port, "bound_port": bound_ports.get(lst.port)}
            for lst in snap.listeners
        ],
        "pools": {
            key: {
                "scheduler_profile": gateway.scheduler_profile_of(pool),
                "endpoints": [_endpoint_status(gateway, address, staleness, now)
                              for address in pool.addresses],
                **_placement_status(snap, key),
            }
            for key, pool in snap.pools.items()
        },
        "ejected": _ejected(gateway, snap, now),
        "active_requests": gateway.active_requests,
    }


def _endpoint_status(gateway: Gateway, address: str, staleness: float,
                     now: float) -> dict[str, Any]:
    store = gateway.store
    state = store.get(address)
    signals = store.fresh_signals(address, now, staleness)
    out: dict[str, Any] = {"address": address, "in_flight": store.in_flight(address),
                           "awaiting_first_token":
                               state.awaiting_first_token if state is not None else 0,
                           "metrics_fresh": signals is not None}
    health = gateway.health.get(address)
    if health is not None:
        out["healthy"] = health.healthy
        if health.last_error is not None:
            out["last_health_error"] = health.last_error
    if signals is not None:
        out.update(waiting=signals.waiting, running=signals.running,
                   kv_usage=signals.kv_usage, lora_running=sorted(signals.lora_running),
                   lora_waiting=sorted(signals.lora_waiting), max_lora=signals.max_lora)
    if state is not None and state.last_error is not None:
        out["last_scrape_error"] = state.last_error
    return out


def _placement_status(snap: Snapshot, key: str) -> dict[str, Any]:
    """Multi-cluster view of a pool: placement of each endpoint, balancing and checks."""
    pool = snap.pools[key]
    out: dict[str, Any] = {}
    if any(ep.cluster or ep.region for ep in pool.endpoints):
        out["placement"] = {ep.address: {"cluster": ep.cluster, "region": ep.region}
                            for ep in pool.endpoints}
    spec = snap.backend_policies.get(key)
    if spec is not None:
        out["balancing"] = {"policy": spec.key, "mode": spec.mode,
                            "max_utilization": spec.max_utilization
                            if spec.mode == "CUSTOM_METRICS" else None,
                            "max_in_flight": spec.max_in_flight, "dry_run": spec.dry_run,
                            "timeout_sec": spec.timeout,
                            "traffic_duration": spec.traffic_duration}
    check = snap.health_checks.get(key)
    if check is not None:
        out["health_check"] = {"source": check.source, "path": check.path,
                               "interval": check.interval}
    return out


def _ejected(gateway: Gateway, snap: Snapshot, now: float) -> dict[str, list[str]]:
    """Endpoints ejected by outlier detection now, by backendRef key."""
    out: dict[str, list[str]] = {}
    for route in snap.routes:
        for rule in route.rules:
            for b in rule.backends:
                detector = gateway.outlier_detector(b.key)
                if detector is not None and b.pool is not None:
                    out[b.key] = [a for a in b.pool.addresses if detector.is_ejected(a, now)]
    return out

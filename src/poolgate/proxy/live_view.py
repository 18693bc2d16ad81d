"""The live view of the gateway (`/api/live` on the admin listener): what the status page at `/`
and `poolgate top` draw.

A sync, read-only view of the `Gateway`'s public state, like `status.py`; the caller passes the
clock reading. One document per poll: each pool with its endpoints and their live signals and
state, its regions' share of the last minute's requests, its backendRefs' circuit breakers, the
scheduler's recent picks and what decided each, and the gateway's traffic second by second.
The document's shape is `LIVE_VERSION`; fields are added, never renamed, within a version.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from poolgate.core.pools import Pool
from poolgate.observability.live import Summary
from poolgate.proxy.cluster import BackendCluster
from poolgate.proxy.gateway import Gateway
from poolgate.scheduling.pick_log import PickExplanation
from poolgate.traffic.circuit_breaker import CircuitBreaker

LIVE_VERSION = 1
PICKS_SHOWN = 12
RATE_SECONDS = 60  # per-endpoint rates and region shares are over the last minute


def live_document(gateway: Gateway, *, bound_ports: Mapping[int, int], staleness: float,
                  now: float, not_ready: str | None, seconds: int | None = None
                  ) -> dict[str, Any]:
    """The `/api/live` document at monotonic time `now`. `staleness`: metrics older than this
    many seconds are not fresh; `not_ready`: why the gateway is not ready (None when it is);
    `seconds`: how much of the traffic history to include (default: all of it)."""
    live = gateway.live
    served = live.served(now, RATE_SECONDS)
    snap = gateway.snapshot
    clusters = gateway.runtime.clusters
    return {
        "version": LIVE_VERSION,
        "time": time.time(),
        "ready": not_ready is None,
        "not_ready": not_ready,
        "active_requests": gateway.active_requests,
        "listeners": [{"name": lst.name, "port": lst.port, "bound_port": bound_ports.get(lst.port)}
                      for lst in snap.listeners],
        "summary": {"last_10s": _summary(live.summary(now, 10)),
                    "last_60s": _summary(live.summary(now, 60))},
        "traffic": _traffic(gateway, now, seconds),
        "pools": [_pool(gateway, pool, [c for c in clusters.values() if c.pool is not None
                                        and c.pool.key == key], served, staleness, now)
                  for key, pool in snap.pools.items()],
        "backends": [_backend(gateway, c, now) for c in clusters.values() if c.pool is None],
    }


def _summary(s: Summary) -> dict[str, Any]:
    return {"seconds": s.seconds, "requests": s.requests, "rate": s.rate,
            "error_rate": s.error_rate, "throttled_rate": s.throttled_rate,
            "ttft_p50": s.ttft_p50, "ttft_p95": s.ttft_p95, "ttft_mean": s.ttft_mean}


def _traffic(gateway: Gateway, now: float, seconds: int | None) -> dict[str, Any]:
    s = gateway.live.series(now, seconds)
    return {"interval": 1, "end": s.end, "requests": s.requests, "errors": s.errors,
            "throttled": s.throttled, "ttft_p50": s.ttft_p50, "ttft_p95": s.ttft_p95}


def _pool(gateway: Gateway, pool: Pool, clusters: list[BackendCluster], served: dict[str, int],
          staleness: float, now: float) -> dict[str, Any]:
    ejected = {a for c in clusters if c.outlier is not None for a in pool.addresses
               if c.outlier.detector.is_ejected(a, now)}
    endpoints = [_endpoint(gateway, ep.address, ep.cluster, ep.region, ejected, served,
                           staleness, now) for ep in pool.endpoints]
    scheduler = gateway.scheduler(pool)
    return {
        "key": pool.key, "namespace": pool.namespace, "name": pool.name,
        "profile": gateway.scheduler_profile_of(pool),
        "endpoints": endpoints,
        "regions": _regions(endpoints),
        "picks": [_pick(p, now) for p in scheduler.recent_picks(PICKS_SHOWN)],
        "picks_total": scheduler.picks.count,
        "backends": [_backend(gateway, c, now) for c in clusters],
    }


def _endpoint(gateway: Gateway, address: str, cluster: str | None, region: str | None,
              ejected: set[str], served: dict[str, int], staleness: float,
              now: float) -> dict[str, Any]:
    store = gateway.store
    state = store.get(address)
    signals = store.fresh_signals(address, now, staleness)
    health = gateway.health.get(address)
    out: dict[str, Any] = {
        "address": address, "cluster": cluster, "region": region,
        "in_flight": state.in_flight if state is not None else 0,
        "awaiting_first_token": state.awaiting_first_token if state is not None else 0,
        # The other gateway replicas' counts (shared in-flight view; 0 without one).
        "peer_in_flight": state.peer_in_flight if state is not None else 0,
        "peer_awaiting_first_token": state.peer_awaiting_first_token if state is not None
        else 0,
        "served_60s": served.get(address, 0),
        "rate": served.get(address, 0) / RATE_SECONDS,
        "metrics_fresh": signals is not None,
        "metrics_age": None if state is None or state.signals is None
        else max(0.0, now - state.signals.scraped_at),
        "healthy": None if health is None or not health.checked else health.healthy,
        "ejected": address in ejected,
        "unreachable": address in store.unreachable,
        "waiting": None, "running": None, "kv_usage": None,
        "lora_running": [], "lora_waiting": [], "max_lora": None,
        "last_error": _last_error(gateway, address),
    }
    if signals is not None:
        out.update(waiting=signals.waiting, running=signals.running, kv_usage=signals.kv_usage,
                   lora_running=sorted(signals.lora_running),
                   lora_waiting=sorted(signals.lora_waiting), max_lora=signals.max_lora)
    out["state"] = _state(out, scraped=state is not None and state.scrapes_ok > 0)
    return out


def _state(ep: Mapping[str, Any], *, scraped: bool) -> str:
    """One word for the endpoint, worst first: ejected (outlier detection), unhealthy (active
    health check), unreachable (a connection could not be opened), stale (no fresh metrics),
    unknown (never scraped), ok."""
    if ep["ejected"]:
        return "ejected"
    if ep["healthy"] is False:
        return "unhealthy"
    if ep["unreachable"]:
        return "unreachable"
    if not ep["metrics_fresh"]:
        return "stale" if scraped else "unknown"
    return "ok"


def _last_error(gateway: Gateway, address: str) -> str | None:
    health = gateway.health.get(address)
    if health is not None and not health.healthy and health.last_error is not None:
        return f"health check: {health.last_error}"
    state = gateway.store.get(address)
    if state is not None and state.last_error is not None and (
            state.signals is None or state.last_error_at is None
            or state.last_error_at >= state.signals.scraped_at):
        return f"scrape: {state.last_error}"
    return None


def _regions(endpoints: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per region (or cluster) of a multi-cluster pool: its endpoints, in-flight requests and
    share of the requests served in the last minute; empty for a pool without placement."""
    if not any(ep["region"] or ep["cluster"] for ep in endpoints):
        return []
    groups: dict[str, list[dict[str, Any]]] = {}
    for ep in endpoints:
        groups.setdefault(ep["region"] or ep["cluster"] or "-", []).append(ep)
    total = sum(ep["served_60s"] for ep in endpoints)
    return [{"region": name,
             "clusters": sorted({ep["cluster"] for ep in eps if ep["cluster"]}),
             "endpoints": len(eps),
             "available": sum(1 for ep in eps if ep["state"] == "ok"),
             "in_flight": sum(ep["in_flight"] for ep in eps),
             "served_60s": (n := sum(ep["served_60s"] for ep in eps)),
             "share": n / total if total else None}
            for name, eps in groups.items()]


def _pick(p: PickExplanation, now: float) -> dict[str, Any]:
    return {"age": max(0.0, now - p.at), "model": p.model, "lora": p.lora,
            "endpoint": p.endpoint, "offered": p.offered, "candidates": p.candidates,
            "total": p.total, "runner_up": p.runner_up, "runner_up_total": p.runner_up_total,
            "decided_by": p.decided_by, "margin": p.margin, "reason": p.reason,
            "contributions": p.contributions}


def _backend(gateway: Gateway, cluster: BackendCluster, now: float) -> dict[str, Any]:
    out: dict[str, Any] = {"key": cluster.key, "breaker": _breaker(cluster.breaker)}
    detector = gateway.outlier_detector(cluster.key)
    if detector is not None:
        out["ejected"] = [a for a in cluster.candidates if detector.is_ejected(a, now)]
    return out


def _breaker(breaker: CircuitBreaker) -> dict[str, Any]:
    """The breaker's counters against its limits; `state` is "open" while a new request would
    overflow or wait (requests or connections at their limit), "pending" while requests wait,
    else "closed"."""
    limits = breaker.limits
    full = (breaker.active >= limits.max_parallel_requests
            or breaker.connections_busy >= limits.max_connections)
    state = "open" if full else ("pending" if breaker.pending else "closed")
    return {"state": state,
            "active": breaker.active, "max_parallel_requests": limits.max_parallel_requests,
            "connections": breaker.connections_busy, "max_connections": limits.max_connections,
            "pending": breaker.pending, "max_pending_requests": limits.max_pending_requests,
            "retries": breaker.active_retries,
            "max_parallel_retries": limits.max_parallel_retries,
            "overflows": dict(breaker.overflows_total),
            "last_overflow": breaker.last_overflow_reason}

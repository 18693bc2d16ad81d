"""Starting `poolgate router`: configuration, logging, the KV store, then serve until signalled."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Mapping

from aiohttp import web

from poolgate.router.app import build_app
from poolgate.router.config import ConfigError, RouterConfig, load_config
from poolgate.state.interfaces import LeaseStore
from poolgate.state.kv_endpoints import owner_node
from poolgate.state.redis_leases import RedisLeaseStore

log = logging.getLogger("poolgate.router")


def describe_startup(config: RouterConfig) -> list[str]:
    """The start-up log lines (the seed asks for the KV endpoints to be logged)."""
    lines = [
        f"router for model {config.model_ref!r} on {config.host}:{config.port} "
        f"(pod {config.router_pod or '-'}); MAX_CONCURRENCY={config.max_concurrency} "
        f"OVERFLOW={config.overflow.value}"
        + (f" MAX_QUEUE={config.max_queue} QUEUE_TIMEOUT_MS={config.queue_timeout_ms}"
           if config.overflow.value == "queue" else ""),
        "KV endpoints: " + (", ".join(str(ep) for ep in config.kv_endpoints) or "(none)"),
    ]
    if config.global_max_concurrency is not None:
        node = owner_node(config.kv_endpoints, config.kv_key)
        lines.append(
            f"global limit GLOBAL_MAX_CONCURRENCY={config.global_max_concurrency} on key "
            f"{config.kv_key!r} at {node} (owner of the key among {len(config.kv_endpoints)} "
            f"node(s)); KV_LEASE_MS={config.kv_lease_ms} KV_FAILURE_MODE={config.kv_failure_mode.value}")
    if config.backend_url is not None:
        lines.append(f"forwarding to {config.backend_url}/v1/completions")
    else:
        lines.append(f"simulating processing: SIMULATED_LATENCY_MS={config.simulated_latency_ms}")
    return lines


def run(env: Mapping[str, str] | None = None) -> int:
    """Serve until SIGINT/SIGTERM; returns the process exit code (2 on a configuration error)."""
    try:
        config = load_config(os.environ if env is None else env)
    except ConfigError as exc:
        print(f"poolgate router: configuration error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for line in describe_startup(config):
        log.info("%s", line)

    def store() -> LeaseStore:
        node = owner_node(config.kv_endpoints, config.kv_key)
        return RedisLeaseStore(node, config.kv_timeout_ms / 1000)

    try:
        import uvloop
    except ImportError:
        loop_factory = None
    else:
        loop_factory = uvloop.new_event_loop
    loop = loop_factory() if loop_factory is not None else asyncio.new_event_loop()
    try:
        web.run_app(build_app(config, store), host=config.host, port=config.port, print=None,
                    access_log=None, shutdown_timeout=5.0, loop=loop)
    except OSError as exc:
        print(f"poolgate router: cannot listen on {config.host}:{config.port}: {exc}",
              file=sys.stderr)
        return 1
    return 0

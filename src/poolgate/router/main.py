"""Starting `poolgate router`: configuration, logging, the KV store, then serve until signalled."""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import sys
from collections.abc import Callable, Mapping

from aiohttp import web

from poolgate._aio import StopSignal, cancel_and_wait, run_until_stopped
from poolgate.router.app import ROUTER, Router, build_app
from poolgate.router.config import ConfigError, RouterConfig, load_config
from poolgate.router.listener import listen
from poolgate.state.interfaces import LeaseStore
from poolgate.state.kv_endpoints import owner_node
from poolgate.state.redis_leases import RedisLeaseStore

log = logging.getLogger("poolgate.router")

# Seconds the requests in progress at a stop signal get to finish.
DRAIN_S = 5.0


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
    if config.api_keys is not None:
        lines.append(f"/infer needs an API key: {len(config.api_keys)} client(s) in API_KEYS_FILE")
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

    return run_until_stopped("poolgate router", lambda stop: serve(config, store, stop))


async def serve(config: RouterConfig, store: Callable[[], LeaseStore], stop: StopSignal) -> int:
    """Listen until `stop`, then drain and close; returns the exit code (1 when the address
    cannot be bound)."""
    app = build_app(config, store)
    # `drain` has waited for the requests (and cancelled the late ones) before cleanup runs, so
    # aiohttp's own wait only covers a response still being written.
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        try:
            listening = await listen(runner, config.host, config.port)
        except OSError as exc:
            print(f"poolgate router: {listen_problem(config.host, config.port, exc)}",
                  file=sys.stderr)
            return 1
        await stop.wait()
        await drain(app[ROUTER], runner, listening, DRAIN_S)
    finally:
        await runner.cleanup()
    return 0


def listen_problem(host: str, port: int, error: OSError) -> str:
    """Why the router cannot listen, and the variable that picks another port."""
    if error.errno == errno.EADDRINUSE:
        reason = "the address is already in use"
    elif error.errno == errno.EACCES:
        reason = "permission denied (ports below 1024 need root)"
    else:
        return f"cannot listen on {host}:{port}: {error.strerror or error} (check HOST and PORT)"
    return f"cannot listen on {host}:{port}: {reason}; choose another port with PORT"


async def drain(router: Router, runner: web.AppRunner, listening: asyncio.Server,
                seconds: float) -> None:
    """Stop accepting, let the requests in progress finish for up to `seconds`, cancel the rest
    (which releases their slots and leases while the KV store is still open)."""
    router.draining = True  # /readyz answers 503 to a probe on a connection still open
    listening.close()
    assert runner.server is not None
    runner.server.pre_shutdown()  # close idle keep-alive connections, and busy ones when done
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while router.in_progress and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if router.in_progress:
        log.warning("%d request(s) still in progress after %g s: cancelling them",
                    len(router.in_progress), seconds)
        await cancel_and_wait(list(router.in_progress))
    log.info("router stopped")

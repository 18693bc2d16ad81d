"""Running the gateway as a process: event loop, signals, start-up errors."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
from collections.abc import Awaitable, Callable

from poolgate._aio import StopSignal, run_until_stopped
from poolgate.discovery.kubernetes import PodCache
from poolgate.kube import KubeError
from poolgate.proxy.listeners import ListenError
from poolgate.proxy.manifests import ConfigError, load
from poolgate.proxy.server import GatewayServer, ServeOptions

log = logging.getLogger("poolgate.server")

# Container allocations (net of frees) between two young-generation collections. The request
# path leaves no cyclic garbage (gc.DEBUG_SAVEALL over 900 proxied requests: none per request, 16
# objects per client connection), so a young collection only walks, and promotes, the objects of
# the requests in flight; at CPython's default of 700 that happened every few requests.
YOUNG_THRESHOLD = 7000


def tune_collector() -> None:
    """Set the collector up for serving: what start-up built out of its reach, collections rarer.

    Everything built so far (modules, the configuration snapshot, plugins) lives as long as the
    process: frozen, full collections no longer walk it. A request's objects are freed by
    reference counting; cycles among them wait for a young collection, now every
    `YOUNG_THRESHOLD` allocations instead of 700.
    """
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, older, oldest)


def refreeze() -> None:
    """After a configuration swap: give the frozen objects back to the collector so that the old
    configuration's reference cycles are freed, then freeze what is still alive again.

    What requests in flight still hold of the old configuration is frozen with the rest and freed at
    the next swap, so at most the configurations alive at the last swap stay.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


async def serve_until_stopped(options: ServeOptions, stop: StopSignal,
                              on_started: Callable[[GatewayServer], Awaitable[None]] | None = None) -> int:
    """Start the gateway, run until a stop signal, then drain and stop; returns an exit code.

    A signal that arrives during start-up is kept in `stop`: the gateway then stops as soon as it
    has started.
    """
    kubernetes = options.discovery == "kubernetes" or options.source == "kubernetes"
    pods = PodCache() if kubernetes else None
    try:
        # With pod discovery the pools are empty until the first pod lists: the load redone
        # then reports what is really missing.
        snapshot = await asyncio.to_thread(load, options.paths, options.profile_names, pods,
                                           pods is None)
    except ConfigError as e:
        print("poolgate: the configuration has errors:", file=sys.stderr)
        for line in e.problems:
            print(f"  {line}", file=sys.stderr)
        return 2
    try:
        server = GatewayServer(options, snapshot, pods)
    except KubeError as e:
        print(f"poolgate: kubernetes API: {e}", file=sys.stderr)
        return 1
    try:
        await server.start()
    except ConfigError as e:
        for line in e.problems:
            print(f"poolgate: {line}", file=sys.stderr)
        await server.stop()
        return 2
    except ListenError as e:
        print(f"poolgate: {e}", file=sys.stderr)
        await server.stop()
        return 1
    except KubeError as e:
        what = "pod discovery" if options.source == "files" else "kubernetes API"
        print(f"poolgate: {what}: {e}", file=sys.stderr)
        await server.stop()
        return 1
    tune_collector()
    server.on_reload.append(lambda _snapshot: refreeze())
    what = "endpoint picker (gRPC ext_proc)" if options.front == "ext_proc" else "gateway listener"
    for declared, bound in sorted(server.bound_ports.items()):
        log.info("%s %d bound on %s:%d", what, declared, options.host, bound)
    log.info("admin on http://%s:%d (status page at /; /metrics /healthz /readyz /status "
             "/api/live)", options.admin_host, options.admin_port)
    try:
        if on_started is not None:
            await on_started(server)
        await stop.wait()
    finally:
        log.info("stopping: draining requests in flight")
        await server.stop()
    return 0


def run_serve(options: ServeOptions) -> int:
    """Run `poolgate serve` until SIGTERM or SIGINT; returns the exit code."""
    name = "poolgate epp" if options.front == "ext_proc" else "poolgate serve"
    return run_until_stopped(name, lambda stop: serve_until_stopped(options, stop))

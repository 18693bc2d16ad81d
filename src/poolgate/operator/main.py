"""Starting `poolgate operator`: credentials, then the controller until signalled."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from aiohttp import web

from poolgate._aio import StopSignal, cancel_and_wait, run_until_stopped
from poolgate.kube import (
    KubeClient,
    KubeCredentials,
    KubeError,
    credentials_for,
)
from poolgate.kube.leader import LeaderElector, LeaseElection, LeaseTiming
from poolgate.operator.controller import Controller, ControllerOptions

log = logging.getLogger("poolgate.operator")


@dataclass(frozen=True)
class Election:
    """`--leader-elect`: the Lease to hold, who we are, and its timing."""

    namespace: str
    name: str
    identity: str
    timing: LeaseTiming


def default_identity() -> str:
    """The pod's name when set (POD_NAME), else host_pid: unique among candidates."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}_{os.getpid()}"


def _health_app(controller: Controller, elector: LeaderElector | None) -> web.Application:
    """`/healthz`: the process answers; `/readyz`: the last list of InferenceServices succeeded,
    or this replica is a standby (it lists only once it holds the Lease)."""

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(_: web.Request) -> web.Response:
        if controller.listed or (elector is not None and not elector.is_leader()):
            return web.Response(text="ok\n")
        return web.Response(status=503, text="not ready: InferenceServices not listed yet\n")

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    return app


async def _serve(credentials: KubeCredentials, options: ControllerOptions,
                 stop: StopSignal, election: Election | None = None,
                 health: tuple[str, int] | None = None) -> int:
    async with aiohttp.ClientSession() as session:
        client = KubeClient(credentials, session)
        controller = Controller(client, options)
        elector = None if election is None else LeaderElector(election.identity, election.timing)
        runner: web.AppRunner | None = None
        if health is not None:
            runner = web.AppRunner(_health_app(controller, elector), access_log=None)
            await runner.setup()
            try:
                await web.TCPSite(runner, *health).start()
            except OSError as e:
                await runner.cleanup()
                print(f"poolgate operator: cannot listen on {health[0]}:{health[1]} for the "
                      f"probes: {e.strerror}; choose another port with --health-port",
                      file=sys.stderr)
                return 1
        if election is None or elector is None:
            task = asyncio.create_task(controller.run())
        else:
            lease = LeaseElection(client, election.namespace, election.name, elector)
            task = asyncio.create_task(lease.run(controller.run))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        # Nothing to drain: an apply cut short is redone by the next start, which lists and
        # reconciles every InferenceService again (server-side apply is idempotent).
        await cancel_and_wait((task, stopping))
        if runner is not None:
            await runner.cleanup()
    log.info("operator stopped")
    return 0


@dataclass(frozen=True)
class LeaseSettings:
    """`--leader-elect`'s Lease as given on the command line (namespace None: the
    credentials')."""

    name: str = "poolgate-operator"
    namespace: str | None = None
    timing: LeaseTiming = field(default_factory=LeaseTiming)


def run(kubeconfig: Path | None, namespace: str | None, all_namespaces: bool,
        resync_seconds: float, log_level: str, lease: LeaseSettings | None = None,
        health: tuple[str, int] | None = None) -> int:
    """Run the controller (with leader election when `lease` is given, and the probes on
    `health`); returns the exit code (2 when credentials cannot be loaded)."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        credentials = credentials_for(kubeconfig)
    except KubeError as exc:
        print(f"poolgate operator: {exc}", file=sys.stderr)
        return 2
    scope = None if all_namespaces else (namespace or credentials.namespace)
    log.info("watching InferenceServices in %s at %s",
             "all namespaces" if scope is None else f"namespace {scope}", credentials.server)
    election = None
    if lease is not None:
        election = Election(lease.namespace or credentials.namespace, lease.name,
                            default_identity(), lease.timing)
        log.info("leader election on Lease %s/%s as %s", election.namespace, election.name,
                 election.identity)
    return run_until_stopped("poolgate operator", lambda stop: _serve(
        credentials, ControllerOptions(scope, resync_seconds), stop, election, health))

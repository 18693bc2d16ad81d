"""Starting `poolgate operator`: credentials, then the controller until signalled."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from poolgate._aio import StopSignal, cancel_and_wait, run_until_stopped
from poolgate.kube import (
    KubeClient,
    KubeCredentials,
    KubeError,
    in_cluster_credentials,
    kubeconfig_credentials,
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


async def _serve(credentials: KubeCredentials, options: ControllerOptions,
                 stop: StopSignal, election: Election | None = None) -> int:
    async with aiohttp.ClientSession() as session:
        client = KubeClient(credentials, session)
        controller = Controller(client, options)
        if election is None:
            task = asyncio.create_task(controller.run())
        else:
            lease = LeaseElection(client, election.namespace, election.name,
                                  LeaderElector(election.identity, election.timing))
            task = asyncio.create_task(lease.run(controller.run))
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        # Nothing to drain: an apply cut short is redone by the next start, which lists and
        # reconciles every InferenceService again (server-side apply is idempotent).
        await cancel_and_wait((task, stopping))
    log.info("operator stopped")
    return 0


def run(kubeconfig: Path | None, namespace: str | None, all_namespaces: bool,
        resync_seconds: float, log_level: str, leader_elect: bool = False,
        lease_name: str = "poolgate-operator", lease_namespace: str | None = None,
        timing: LeaseTiming | None = None) -> int:
    """Run the controller; returns the exit code (2 when credentials cannot be loaded)."""
    logging.basicConfig(level=log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        credentials = (kubeconfig_credentials(kubeconfig) if kubeconfig is not None
                       else in_cluster_credentials())
    except KubeError as exc:
        print(f"poolgate operator: {exc}", file=sys.stderr)
        return 2
    scope = None if all_namespaces else (namespace or credentials.namespace)
    log.info("watching InferenceServices in %s at %s",
             "all namespaces" if scope is None else f"namespace {scope}", credentials.server)
    election = None
    if leader_elect:
        election = Election(lease_namespace or credentials.namespace, lease_name,
                            default_identity(), timing or LeaseTiming())
        log.info("leader election on Lease %s/%s as %s", election.namespace, election.name,
                 election.identity)
    return run_until_stopped("poolgate operator", lambda stop: _serve(
        credentials, ControllerOptions(scope, resync_seconds), stop, election))

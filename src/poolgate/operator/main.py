"""Starting `poolgate operator`: credentials, then the controller until signalled."""

from __future__ import annotations

import asyncio
import logging
import sys
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
from poolgate.operator.controller import Controller, ControllerOptions

log = logging.getLogger("poolgate.operator")


async def _serve(credentials: KubeCredentials, options: ControllerOptions,
                 stop: StopSignal) -> int:
    async with aiohttp.ClientSession() as session:
        controller = Controller(KubeClient(credentials, session), options)
        task = asyncio.create_task(controller.run())
        stopping = asyncio.create_task(stop.wait())
        await asyncio.wait((task, stopping), return_when=asyncio.FIRST_COMPLETED)
        # Nothing to drain: an apply cut short is redone by the next start, which lists and
        # reconciles every InferenceService again (server-side apply is idempotent).
        await cancel_and_wait((task, stopping))
    log.info("operator stopped")
    return 0


def run(kubeconfig: Path | None, namespace: str | None, all_namespaces: bool,
        resync_seconds: float, log_level: str) -> int:
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
    return run_until_stopped("poolgate operator", lambda stop: _serve(
        credentials, ControllerOptions(scope, resync_seconds), stop))

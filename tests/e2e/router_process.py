"""Starting `poolgate router` processes for end-to-end tests, and reading their metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import (
    ProcessGroup,
    ServerProcess,
    free_port,
    poolgate_command,
    wait_http,
)


@dataclass(frozen=True)
class RouterProcess:
    """A running router: its base URL and process."""

    url: str
    process: ServerProcess


def start_router(procs: ProcessGroup, env: Mapping[str, str] | None = None, *,
                 wait_ready: bool = True, **more_env: str) -> RouterProcess:
    """Run `poolgate router` on a free loopback port with `env` on top of a test baseline."""
    port = free_port()
    full = {"MODEL_REF": "llama-3-8b", "HOST": "127.0.0.1", "PORT": str(port),
            "POD_NAME": "router-test-0", "LOG_LEVEL": "INFO", **(env or {}), **more_env}
    proc = procs.start(poolgate_command("router"), env=full)
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/healthz", proc=proc)
    if wait_ready:
        wait_http(f"{url}/readyz", proc=proc)
    return RouterProcess(url, proc)


async def metric(session: aiohttp.ClientSession, router: RouterProcess, name: str,
                 labels: dict[str, str] | None = None) -> float:
    """One sample from the router's /metrics (0 when absent)."""
    async with session.get(f"{router.url}/metrics") as resp:
        text = await resp.text()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
    return 0.0

"""Helpers for gateway end-to-end tests: a simulated fleet plus `poolgate serve` on free ports."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from tests.support.processes import (
    ProcessGroup,
    ServerProcess,
    free_port,
    free_port_range,
    poolgate_command,
    wait_http,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SEED_000 = EXAMPLES / "seed-000-circuit-breaker"

# The Gateway every test configuration attaches its HTTPRoute to (`gw`, listener port 80).
GATEWAY_YAML = """\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: poolgate
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
"""

# The InferencePool `pool` selecting the replicas labelled `app: sim`, in both API versions.
POOL_V1ALPHA2_YAML = """\
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  targetPortNumber: 8000
  selector: {app: sim}
  extensionRef: {name: epp}
"""
POOL_V1_YAML = """\
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: pool, namespace: default}
spec:
  targetPorts: [{number: 8000}]
  selector: {matchLabels: {app: sim}}
  endpointPickerRef: {name: epp}
"""

# An HTTPRoute `route` on `gw` sending every request to the InferencePool `pool`.
ROUTE_TO_POOL_YAML = """\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: route, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: pool}]
"""

SEED_LORAS = [
    "sql-lora=/adapters/yard1/llama-2-7b-sql-lora-test_0",
    "sql-lora-1=/adapters/yard1/llama-2-7b-sql-lora-test_1",
    "tweet-summary=/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_0",
    "tweet-summary-1=/adapters/vineetsharma/qlora-adapter-Llama-2-7b-hf-TweetSumm_1",
]


@dataclass
class Fleet:
    """A running `poolgate sim` fleet."""

    proc: ServerProcess
    base_port: int
    replicas: int

    @property
    def urls(self) -> list[str]:
        return [f"http://127.0.0.1:{self.base_port + i}" for i in range(self.replicas)]

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{self.base_port + i}" for i in range(self.replicas)]


@dataclass
class RunningGateway:
    """A running `poolgate serve`."""

    proc: ServerProcess
    port: int
    admin_port: int
    config_dir: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def admin(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    async def access_log(self, count: int,
                         where: Callable[[dict[str, Any]], bool] = lambda rec: True,
                         timeout: float = 10.0) -> list[dict[str, Any]]:
        """The access-log records `where` selects, once there are `count` of them.

        The gateway writes a request's record when it is done with it, which is just after the
        client received the last byte: a test that has its responses waits for the records.
        """
        deadline = time.monotonic() + timeout
        while True:
            records = [rec for line in self.proc.output().splitlines() if line.startswith("{")
                       if where(rec := orjson.loads(line))]
            if len(records) >= count or time.monotonic() > deadline:
                return records
            await asyncio.sleep(0.02)


def start_fleet(procs: ProcessGroup, replicas: int = 1, *, model: str = "/model/llama2",
                profile: str = "fast", time_scale: float = 1.0, extra: list[str] | None = None,
                loras: list[str] | None = None) -> Fleet:
    base = free_port_range(replicas)
    args = ["sim", "--replicas", str(replicas), "--port", str(base), "--model", model,
            "--profile", profile, "--time-scale", str(time_scale), "--seed", "7"]
    if loras:
        args += ["--lora-modules", *loras, "--max-loras", "4"]
    args += extra or []
    proc = procs.start(poolgate_command(*args))
    for i in range(replicas):
        wait_http(f"http://127.0.0.1:{base + i}/health", proc=proc)
    return Fleet(proc, base, replicas)


def write_endpoints(directory: Path, labels: dict[str, str], addresses: list[str],
                    name: str = "local-replicas") -> Path:
    """A LocalEndpoints declaration for `addresses`, as `poolgate sim --endpoints-file` writes."""
    doc = {
        "apiVersion": "poolgate.dev/v1alpha1",
        "kind": "LocalEndpoints",
        "metadata": {"name": name},
        "spec": {"labels": labels, "addresses": addresses},
    }
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def seed_000_config(tmp: Path, fleet: Fleet) -> Path:
    """The seed 000/001 manifests, unmodified, plus a LocalEndpoints for the fleet."""
    config = tmp / "config"
    config.mkdir()
    for name in ("inference_rules.yaml", "gateway.yaml", "sleep.yaml", "inference_app.yaml"):
        shutil.copy(SEED_000 / name, config / name)
    write_endpoints(config, {"app": "vllm-llama2-7b-pool"}, fleet.addresses)
    return config


def start_gateway(procs: ProcessGroup, config: Path, *extra: str) -> RunningGateway:
    port, admin = free_port(), free_port()
    proc = procs.start(poolgate_command(
        "serve", "-f", str(config), "--port", str(port), "--admin-port", str(admin),
        "--host", "127.0.0.1", "--seed", "1", *extra,
    ))
    wait_http(f"http://127.0.0.1:{admin}/readyz", proc=proc)
    return RunningGateway(proc, port, admin, config)

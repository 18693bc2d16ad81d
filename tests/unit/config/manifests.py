"""Builders of small manifests for config tests."""

from __future__ import annotations

import textwrap
from pathlib import Path

from poolgate.config.build import LoadResult, load_snapshot

GATEWAY = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: c
  listeners:
  - {name: http, port: 80, protocol: HTTP}
"""

POOL = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: pool}
spec:
  targetPortNumber: 8000
  selector: {app: m}
---
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: eps}
spec:
  labels: {app: m}
  addresses: [127.0.0.1, "127.0.0.2:9000"]
"""


def route(name: str, body: str, hostnames: str = "[]", parent: str = "{name: gw}") -> str:
    """An HTTPRoute with `body` as its (YAML flow or block) rules list."""
    rules = textwrap.indent(textwrap.dedent(body).strip("\n"), "  ")
    return (f"apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n"
            f"metadata: {{name: {name}}}\nspec:\n  parentRefs: [{parent}]\n"
            f"  hostnames: {hostnames}\n  rules:\n{rules}\n")


def load(tmp_path: Path, *docs: str) -> LoadResult:
    """Write `docs` as one multi-document file and load it."""
    path = tmp_path / "manifests.yaml"
    path.write_text("\n---\n".join(textwrap.dedent(d).strip("\n") for d in docs) + "\n")
    return load_snapshot([path])


def messages(result: LoadResult) -> list[str]:
    """`severity: message` of every problem."""
    return [f"{p.severity}: {p.message}" for p in result.problems]

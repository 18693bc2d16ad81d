"""How long `poolgate serve --source kubernetes` takes to build a snapshot from API objects.

`python -m benchmarks.kube_build [--routes N]`: N HTTPRoutes, each to its own InferencePool, on
one Gateway of poolgate's class; the first build converts and validates every object, a rebuild
with nothing changed reuses the conversions (cached per resourceVersion).
"""

from __future__ import annotations

import argparse
import time
from typing import Any, cast

from poolgate.config.build import PROFILE_NAMES
from poolgate.controller.source import DEFAULT_CONTROLLER_NAME, ClusterSource
from poolgate.kube.client import KubeClient


def objects(routes: int) -> list[dict[str, Any]]:
    """The Gateway, its class, and `routes` routes with a pool each."""
    out: list[dict[str, Any]] = [
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
         "metadata": {"name": "poolgate", "resourceVersion": "1"},
         "spec": {"controllerName": DEFAULT_CONTROLLER_NAME}},
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
         "metadata": {"name": "gw", "namespace": "ml", "resourceVersion": "2"},
         "spec": {"gatewayClassName": "poolgate",
                  "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}},
    ]
    for i in range(routes):
        out.append({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": f"r{i}", "namespace": "ml", "resourceVersion": str(100 + i)},
            "spec": {"parentRefs": [{"name": "gw"}], "hostnames": [f"h{i}.example.com"],
                     "rules": [{"backendRefs": [{"group": "inference.networking.k8s.io",
                                                 "kind": "InferencePool", "name": f"p{i}"}]}]}})
        out.append({
            "apiVersion": "inference.networking.k8s.io/v1", "kind": "InferencePool",
            "metadata": {"name": f"p{i}", "namespace": "ml", "resourceVersion": str(10**6 + i)},
            "spec": {"targetPorts": [{"number": 8000}],
                     "selector": {"matchLabels": {"app": f"a{i}"}},
                     "endpointPickerRef": {"name": "x"}}})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--routes", type=int, default=200)
    args = parser.parse_args()
    items = objects(args.routes)
    # build() never calls the API: no client is needed.
    source = ClusterSource(cast(KubeClient, None), [], [DEFAULT_CONTROLLER_NAME], lambda: None)
    for label in ("first build (convert and validate every object)",
                  "rebuild, nothing changed (conversions cached)"):
        started = time.perf_counter()
        built = source.build(items, [], PROFILE_NAMES, None)
        elapsed = time.perf_counter() - started
        assert built.result.snapshot is not None
        print(f"{len(items)} objects, {label}: {elapsed * 1000:.0f} ms "
              f"({len(built.result.snapshot.routes)} routes)")


if __name__ == "__main__":
    main()

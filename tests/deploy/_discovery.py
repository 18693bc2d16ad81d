"""A discovery-only fake Kubernetes API server, so that `kubectl apply --dry-run=client` runs
without a cluster: kubectl needs the server's discovery to map each kind to its resource, and
GETs each object (404 here: "would be created"). It serves nothing else and accepts no write."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True, slots=True)
class Kind:
    api_version: str
    kind: str
    plural: str
    namespaced: bool


# Every kind the chart may render; kubectl fails on any other ("no matches for kind").
KINDS: tuple[Kind, ...] = (
    Kind("v1", "ServiceAccount", "serviceaccounts", True),
    Kind("v1", "Service", "services", True),
    Kind("v1", "ConfigMap", "configmaps", True),
    Kind("apps/v1", "Deployment", "deployments", True),
    Kind("rbac.authorization.k8s.io/v1", "ClusterRole", "clusterroles", False),
    Kind("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Kind("rbac.authorization.k8s.io/v1", "Role", "roles", True),
    Kind("rbac.authorization.k8s.io/v1", "RoleBinding", "rolebindings", True),
    Kind("policy/v1", "PodDisruptionBudget", "poddisruptionbudgets", True),
    Kind("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers", True),
    Kind("apiextensions.k8s.io/v1", "CustomResourceDefinition", "customresourcedefinitions",
         False),
    Kind("gateway.networking.k8s.io/v1", "GatewayClass", "gatewayclasses", False),
    Kind("monitoring.coreos.com/v1", "ServiceMonitor", "servicemonitors", True),
)
NAMESPACED = {(k.api_version, k.kind): k.namespaced for k in KINDS}


def _resource_list(group_version: str) -> dict[str, Any]:
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [{"name": k.plural, "singularName": k.kind.lower(),
                           "namespaced": k.namespaced, "kind": k.kind,
                           "verbs": ["get", "list", "watch", "create", "update", "patch"]}
                          for k in KINDS if k.api_version == group_version]}


def _group_list() -> dict[str, Any]:
    groups: dict[str, list[str]] = {}
    for k in KINDS:
        if "/" in k.api_version:
            group, version = k.api_version.split("/")
            versions = groups.setdefault(group, [])
            if version not in versions:
                versions.append(version)
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
        {"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
         "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
        for g, vs in groups.items()]}


def _answer(path: str) -> dict[str, Any] | None:
    if path == "/api":
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
    if path == "/apis":
        return _group_list()
    if path == "/api/v1":
        return _resource_list("v1")
    parts = path.strip("/").split("/")
    if len(parts) == 3 and parts[0] == "apis":
        return _resource_list(f"{parts[1]}/{parts[2]}")
    return None


@dataclass
class FakeDiscovery:
    """The running server: its URL and every request it saw, as 'METHOD path'."""

    url: str
    requests: list[str] = field(default_factory=list)


@contextmanager
def fake_discovery() -> Iterator[FakeDiscovery]:
    """Serve discovery on 127.0.0.1 (an ephemeral port) for the duration of the block."""
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            seen.append(f"GET {self.path}")
            body = _answer(self.path.split("?")[0])
            if body is None:
                self._send(404, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                                 "reason": "NotFound", "code": 404})
            else:
                self._send(200, body)

        def _refuse(self) -> None:
            seen.append(f"{self.command} {self.path}")
            self._send(405, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "MethodNotAllowed", "code": 405})

        do_POST = do_PUT = do_PATCH = do_DELETE = _refuse

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, name="fake-discovery", daemon=True)
    thread.start()
    try:
        yield FakeDiscovery(f"http://127.0.0.1:{server.server_address[1]}", seen)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

"""A small Kubernetes API client over aiohttp (operator reconciles, gateway pod discovery).

Credentials come from the pod's service account (in-cluster) or from a kubeconfig file
(current context: bearer token, client certificate, CA, or insecure-skip-tls-verify).
"""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml

from poolgate import __version__

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class KubeError(Exception):
    """The API server refused a call or could not be reached; `status` is 0 when unreachable."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}" if status else message)
        self.status = status


@dataclass(frozen=True)
class KubeCredentials:
    """Where the API server is and how to authenticate to it."""

    server: str
    token: str | None = None
    ssl_context: ssl.SSLContext | None = None
    namespace: str = "default"


def in_cluster_credentials(sa_dir: Path = SERVICE_ACCOUNT_DIR) -> KubeCredentials:
    """The pod's service-account token and CA, and the API address from the environment."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise KubeError(0, "not in a cluster (KUBERNETES_SERVICE_HOST unset); pass --kubeconfig")
    try:
        token = (sa_dir / "token").read_text().strip()
        namespace = (sa_dir / "namespace").read_text().strip()
    except OSError as exc:
        raise KubeError(0, f"cannot read the service account in {sa_dir}: {exc}") from None
    context = ssl.create_default_context(cafile=str(sa_dir / "ca.crt"))
    server_host = f"[{host}]" if ":" in host else host
    return KubeCredentials(f"https://{server_host}:{port}", token, context, namespace)


def _materialise(entry: dict[str, Any], key: str, base: Path) -> str | None:
    """A file path for `key` or its inline `key-data` (base64) twin, written to a temp file."""
    if entry.get(f"{key}-data"):
        fd, name = tempfile.mkstemp(prefix="poolgate-kube-")
        with os.fdopen(fd, "wb") as f:
            f.write(base64.b64decode(entry[f"{key}-data"]))
        return name
    if entry.get(key):
        path = Path(entry[key])
        return str(path if path.is_absolute() else base / path)
    return None


def kubeconfig_credentials(path: Path, context_name: str | None = None) -> KubeCredentials:
    """Credentials of a kubeconfig's current (or named) context."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise KubeError(0, f"cannot read kubeconfig {path}: {exc}") from None
    try:
        name = context_name or doc["current-context"]
        context = next(c["context"] for c in doc["contexts"] if c["name"] == name)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == context["cluster"])
        user: dict[str, Any] = next((u["user"] for u in doc.get("users") or []
                     if u["name"] == context.get("user")), {})
    except (KeyError, TypeError, StopIteration):
        raise KubeError(0, f"kubeconfig {path}: no usable current context") from None
    server = str(cluster["server"]).rstrip("/")
    ssl_context: ssl.SSLContext | None = None
    if server.startswith("https://"):
        ssl_context = ssl.create_default_context(cafile=_materialise(cluster, "certificate-authority",
                                                                     path.parent))
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context.check_hostname = False
            ssl_context.verify_mode = ssl.CERT_NONE
        cert = _materialise(user, "client-certificate", path.parent)
        key = _materialise(user, "client-key", path.parent)
        if cert and key:
            ssl_context.load_cert_chain(cert, key)
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return KubeCredentials(server, token, ssl_context, context.get("namespace", "default"))


def credentials_for(kubeconfig: Path | None) -> KubeCredentials:
    """The kubeconfig's current context, or the pod's service account when None."""
    return in_cluster_credentials() if kubeconfig is None else kubeconfig_credentials(kubeconfig)


class KubeClient:
    """The few API calls poolgate makes (the operator's and the pod watcher's)."""

    def __init__(self, credentials: KubeCredentials, session: aiohttp.ClientSession,
                 user_agent: str = f"poolgate/{__version__}") -> None:
        self.credentials = credentials
        self.session = session
        self.user_agent = user_agent  # shows in the API server's audit log

    def _headers(self, content_type: str | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if self.credentials.token:
            headers["Authorization"] = f"Bearer {self.credentials.token}"
        if content_type:
            headers["Content-Type"] = content_type
        return headers

    async def _call(self, method: str, path: str, params: dict[str, str] | None = None,
                    body: Any = None, content_type: str | None = None) -> Any:
        try:
            async with self.session.request(
                method, self.credentials.server + path, params=params,
                data=None if body is None else orjson.dumps(body),
                headers=self._headers(content_type), ssl=self.credentials.ssl_context or True,
                timeout=aiohttp.ClientTimeout(total=30),
            ) as resp:
                raw = await resp.read()
                if resp.status >= 400:
                    raise KubeError(resp.status, _status_message(raw))
                return orjson.loads(raw) if raw else None
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"{method} {path}: {type(exc).__name__} {exc}") from None

    async def list(self, path: str, label_selector: str | None = None) -> dict[str, Any]:
        """GET a collection (`items`, `metadata.resourceVersion`)."""
        params = {"labelSelector": label_selector} if label_selector else None
        result: dict[str, Any] = await self._call("GET", path, params=params)
        return result

    async def get(self, path: str) -> dict[str, Any] | None:
        """GET one object; None when it does not exist (404)."""
        try:
            result: dict[str, Any] = await self._call("GET", path)
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return result

    async def watch(self, path: str, resource_version: str, timeout_seconds: int = 300,
                    label_selector: str | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Stream watch events (`{"type", "object"}`) from `resource_version` on."""
        params = {"watch": "true", "resourceVersion": resource_version,
                  "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        if label_selector:
            params["labelSelector"] = label_selector
        try:
            async with self.session.get(
                self.credentials.server + path, params=params, headers=self._headers(),
                ssl=self.credentials.ssl_context or True,
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=30,
                                              sock_read=timeout_seconds + 30),
            ) as resp:
                if resp.status >= 400:
                    raise KubeError(resp.status, _status_message(await resp.read()))
                async for line in resp.content:
                    if line.strip():
                        yield orjson.loads(line)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise KubeError(0, f"watch {path}: {type(exc).__name__} {exc}") from None

    async def apply(self, obj: dict[str, Any], field_manager: str) -> dict[str, Any]:
        """Server-side apply of a full object (created if missing, conflicts forced)."""
        result: dict[str, Any] = await self._call(
            "PATCH", object_path(obj), params={"fieldManager": field_manager, "force": "true"},
            body=obj, content_type="application/apply-patch+yaml")
        return result

    async def create(self, collection: str, obj: dict[str, Any]) -> dict[str, Any]:
        """POST a new object into `collection` (409 if it exists)."""
        result: dict[str, Any] = await self._call("POST", collection, body=obj,
                                                  content_type="application/json")
        return result

    async def replace(self, path: str, obj: dict[str, Any]) -> dict[str, Any]:
        """PUT an object; with `metadata.resourceVersion` set, 409 if it changed meanwhile."""
        result: dict[str, Any] = await self._call("PUT", path, body=obj,
                                                  content_type="application/json")
        return result

    async def patch_status(self, path: str, status: dict[str, Any]) -> None:
        """Merge-patch the `status` subresource of the object at `path`."""
        await self._call("PATCH", f"{path}/status", body={"status": status},
                         content_type="application/merge-patch+json")


def object_path(obj: dict[str, Any]) -> str:
    """The REST path of a namespaced object of the kinds the operator writes."""
    plural = {"Deployment": "deployments", "Service": "services"}[obj["kind"]]
    api = obj["apiVersion"]
    prefix = "/api/v1" if api == "v1" else f"/apis/{api}"
    meta = obj["metadata"]
    return f"{prefix}/namespaces/{meta['namespace']}/{plural}/{meta['name']}"


def _status_message(raw: bytes) -> str:
    try:
        return str(orjson.loads(raw).get("message", ""))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:300]

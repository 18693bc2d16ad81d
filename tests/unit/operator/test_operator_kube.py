"""Loading Kubernetes credentials and building REST paths (no sockets)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from poolgate.kube import KubeError, in_cluster_credentials, kubeconfig_credentials
from poolgate.kube import object_path as rest_path
from poolgate.operator.controller import collection_path, object_path


def write_kubeconfig(tmp_path: Path, server: str, **user: str) -> Path:
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "test",
        "contexts": [{"name": "test", "context": {"cluster": "c", "user": "u", "namespace": "ml"}}],
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "users": [{"name": "u", "user": user}],
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_kubeconfig_with_token_over_http(tmp_path: Path) -> None:
    creds = kubeconfig_credentials(write_kubeconfig(tmp_path, "http://127.0.0.1:8001/", token="t0k"))
    assert (creds.server, creds.token, creds.namespace, creds.ssl_context) == (
        "http://127.0.0.1:8001", "t0k", "ml", None)


def test_kubeconfig_https_with_insecure_skip(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, "https://k8s:6443", token="t")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["insecure-skip-tls-verify"] = True
    path.write_text(yaml.safe_dump(doc))
    creds = kubeconfig_credentials(path)
    assert creds.ssl_context is not None
    assert creds.ssl_context.check_hostname is False


def test_kubeconfig_token_file(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file\n")
    creds = kubeconfig_credentials(write_kubeconfig(tmp_path, "http://x", tokenFile=str(tmp_path / "tok")))
    assert creds.token == "from-file"


def test_broken_kubeconfigs_are_explained(tmp_path: Path) -> None:
    with pytest.raises(KubeError, match="cannot read kubeconfig"):
        kubeconfig_credentials(tmp_path / "missing")
    (tmp_path / "empty").write_text("kind: Config\n")
    with pytest.raises(KubeError, match="no usable current context"):
        kubeconfig_credentials(tmp_path / "empty")


def test_bad_inline_ca_fails_loudly(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path, "https://k8s:6443", token="t")
    doc = yaml.safe_load(path.read_text())
    doc["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(b"junk").decode()
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(Exception, match=r"PEM|certificate|no start line|lib"):
        kubeconfig_credentials(path)


def test_in_cluster_needs_the_service_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(KubeError, match="not in a cluster"):
        in_cluster_credentials(tmp_path)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(KubeError, match="cannot read the service account"):
        in_cluster_credentials(tmp_path)


def test_paths() -> None:
    assert collection_path(None) == "/apis/poolgate.dev/v1alpha1/inferenceservices"
    assert collection_path("ml") == "/apis/poolgate.dev/v1alpha1/namespaces/ml/inferenceservices"
    assert object_path({"metadata": {"name": "a", "namespace": "ml"}}) == (
        "/apis/poolgate.dev/v1alpha1/namespaces/ml/inferenceservices/a")
    meta = {"name": "a-router", "namespace": "ml"}
    assert rest_path({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta}) == (
        "/apis/apps/v1/namespaces/ml/deployments/a-router")
    assert rest_path({"apiVersion": "v1", "kind": "Service", "metadata": meta}) == (
        "/api/v1/namespaces/ml/services/a-router")

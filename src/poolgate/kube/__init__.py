"""The Kubernetes API as poolgate uses it: a small client, list+watch reflectors, leader
election over a Lease, and the resource types the gateway and the operator read and write."""

from poolgate.kube.client import (
    SERVICE_ACCOUNT_DIR,
    KubeClient,
    KubeCredentials,
    KubeError,
    credentials_for,
    in_cluster_credentials,
    kubeconfig_credentials,
    object_path,
)

__all__ = [
    "SERVICE_ACCOUNT_DIR",
    "KubeClient",
    "KubeCredentials",
    "KubeError",
    "credentials_for",
    "in_cluster_credentials",
    "kubeconfig_credentials",
    "object_path",
]

"""deploy/gateway/gateway.yaml and deploy/operator/operator.yaml, the plain-manifest installs:
valid for Kubernetes 1.34, and the same RBAC, flags, probes and security settings as the chart
renders with its default values (release objects named `poolgate-*` in `poolgate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from poolgate.api.loader import load_manifests
from tests.deploy._chart import (
    REPO,
    Obj,
    accepts,
    args_of,
    grants,
    load_file,
    of_kind,
    one,
    render,
)
from tests.deploy._rbac import (
    LEASE_VERBS,
    RELEASE_NAMESPACE_GRANTS,
    bound_to,
    expected_gateway_grants,
)

pytestmark = pytest.mark.e2e  # renders the chart with helm

GATEWAY = REPO / "deploy" / "gateway" / "gateway.yaml"
OPERATOR = REPO / "deploy" / "operator" / "operator.yaml"
NAMESPACE = "poolgate"


def chart() -> list[Obj]:
    """The chart's default render with the plain files' names: `poolgate-gateway`, ..."""
    return render(sets=["fullnameOverride=poolgate", "operator.enabled=true"])


def container(deployment: Obj) -> dict[str, Any]:
    [c] = deployment["spec"]["template"]["spec"]["containers"]
    return dict(c)


@pytest.mark.parametrize("path", [GATEWAY, OPERATOR], ids=["gateway", "operator"])
def test_plain_manifests_validate_against_kubernetes_1_34(path: Path, tmp_path: Path) -> None:
    for obj in load_file(path):
        if obj["kind"] == "GatewayClass":
            file = tmp_path / "class.yaml"
            file.write_text(yaml.safe_dump(obj))
            assert [str(p) for p in load_manifests([file]).problems] == []
            continue
        try:
            kubernetes_validate.validate(obj, "1.34", strict=True)
        except kubernetes_validate.ValidationError as e:
            path_ = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path_}: {e.message}")
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE


def test_plain_gateway_has_the_chart_rbac() -> None:
    objs = load_file(GATEWAY)
    sa = one(objs, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"]
    subject = {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
    assert one(objs, "ServiceAccount")["metadata"]["name"] == sa
    cluster_role = one(objs, "ClusterRole")
    role = one(objs, "Role")
    assert grants(cluster_role["rules"]) == expected_gateway_grants("all")
    assert grants(role["rules"]) == RELEASE_NAMESPACE_GRANTS
    assert bound_to(objs, cluster_role) == [subject]
    assert bound_to(objs, role) == [subject]


def test_plain_gateway_runs_as_the_chart_does() -> None:
    """Container (image, args, env, ports, probes, preStop, resources, security), pod settings,
    Services, PodDisruptionBudget and GatewayClass all equal the chart's defaults."""
    plain, rendered = load_file(GATEWAY), chart()
    p_deploy = one(plain, "Deployment", "poolgate-gateway")
    c_deploy = one(rendered, "Deployment", "poolgate-gateway")
    assert container(p_deploy) == container(c_deploy)
    p_pod, c_pod = p_deploy["spec"]["template"]["spec"], c_deploy["spec"]["template"]["spec"]
    for field in ("terminationGracePeriodSeconds", "securityContext", "volumes"):
        assert p_pod[field] == c_pod[field], field
    assert p_deploy["spec"]["replicas"] == c_deploy["spec"]["replicas"]
    assert p_deploy["spec"]["template"]["metadata"]["annotations"] == \
        c_deploy["spec"]["template"]["metadata"]["annotations"]
    for name in ("poolgate-gateway", "poolgate-gateway-admin"):
        p_svc, c_svc = one(plain, "Service", name), one(rendered, "Service", name)
        assert p_svc["spec"]["ports"] == c_svc["spec"]["ports"]
        assert p_svc["spec"]["type"] == c_svc["spec"]["type"]
        assert p_svc["spec"]["selector"] == p_deploy["spec"]["selector"]["matchLabels"]
    pdb = one(plain, "PodDisruptionBudget")["spec"]
    assert pdb["maxUnavailable"] == one(rendered, "PodDisruptionBudget")["spec"]["maxUnavailable"]
    assert pdb["selector"] == p_deploy["spec"]["selector"]
    assert one(plain, "GatewayClass") == {
        **one(rendered, "GatewayClass"),
        "metadata": {"name": "poolgate"},
    }
    flags = args_of(container(p_deploy))
    assert flags["--publish-service"] == [f"{NAMESPACE}/poolgate-gateway"]


def test_plain_operator_elects_a_leader_as_the_chart_does() -> None:
    plain, rendered = load_file(OPERATOR), chart()
    deployment = one(plain, "Deployment", "poolgate-operator")
    operator = container(deployment)
    flags = args_of(operator)
    assert flags["--leader-elect"] == []
    assert flags["--lease-name"] == ["poolgate-operator"]
    assert "--all-namespaces" in flags
    assert {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} \
        in operator["env"]
    assert deployment["spec"]["replicas"] >= 2
    sa = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    subject = {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
    [lease_role] = of_kind(plain, "Role")
    assert grants(lease_role["rules"]) == {("coordination.k8s.io", "leases"): LEASE_VERBS}
    assert bound_to(plain, lease_role) == [subject]
    cluster_role = one(plain, "ClusterRole")
    assert bound_to(plain, cluster_role) == [subject]
    chart_role = one(rendered, "ClusterRole", "poolgate-poolgate-operator")
    assert grants(cluster_role["rules"]) == grants(chart_role["rules"])
    chart_operator = container(one(rendered, "Deployment", "poolgate-operator"))
    for field in ("image", "securityContext", "resources", "env", "volumeMounts"):
        assert operator[field] == chart_operator[field], field


@pytest.mark.parametrize("path", [GATEWAY, OPERATOR], ids=["gateway", "operator"])
def test_poolgate_accepts_every_flag_of_the_plain_manifests(path: Path) -> None:
    for deployment in of_kind(load_file(path), "Deployment"):
        args = container(deployment)["args"]
        result = accepts(args)
        assert result.returncode == 0, f"poolgate {' '.join(args)}:\n{result.stderr}"

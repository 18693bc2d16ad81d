"""What the gateway's RBAC must grant, computed from poolgate.kube.resources (the table the
controller itself reads), so that the chart, deploy/gateway/gateway.yaml and the controller
cannot drift apart."""

from __future__ import annotations

from typing import Any

from poolgate.kube.resources import LEASES, PODS, SERVICES, STATUS_WRITTEN, WATCHED
from tests.deploy._chart import Grants, Obj, of_kind

READ = frozenset({"get", "list", "watch"})
WRITE_STATUS = frozenset({"get", "update", "patch"})
LEASE_VERBS = frozenset({"get", "create", "update"})


def expected_read_grants(scope: str) -> Grants:
    """From poolgate.kube.resources: WATCHED and the pools' Pods read, nothing written (what
    `poolgate epp --source kubernetes` needs); `scope` "all", or "cluster" / "namespaced" for
    the split under watchNamespaces."""
    return {(rt.group, rt.plural): READ for rt in (*WATCHED, PODS)
            if scope == "all" or (scope == "cluster") != rt.namespaced}


def expected_gateway_grants(scope: str) -> Grants:
    """The read grants of `expected_read_grants`, and STATUS_WRITTEN's status written (what
    `poolgate serve --source kubernetes` needs besides the release namespace's Role)."""
    out = expected_read_grants(scope)
    for rt in STATUS_WRITTEN:
        if scope == "all" or (scope == "cluster") != rt.namespaced:
            out[(rt.group, f"{rt.plural}/status")] = WRITE_STATUS
    return out


RELEASE_NAMESPACE_GRANTS: Grants = {
    (SERVICES.group, SERVICES.plural): READ,  # --publish-service
    (LEASES.group, LEASES.plural): LEASE_VERBS,  # --leader-elect
}


def bound_to(objs: list[Obj], role: Obj) -> list[dict[str, Any]]:
    """The subjects of every binding in `objs` that grants `role` (in its namespace)."""
    binding_kind = "ClusterRoleBinding" if role["kind"] == "ClusterRole" else "RoleBinding"
    subjects = []
    for b in of_kind(objs, binding_kind):
        ns = b["metadata"].get("namespace")
        if b["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"],
                            "name": role["metadata"]["name"]} \
                and ns == role["metadata"].get("namespace"):
            subjects.extend(b["subjects"])
    return subjects

"""Which InferenceService a Deployment event is about, and the REST paths watched."""

from __future__ import annotations

from typing import Any

import pytest

from poolgate.operator.controller import deployments_path, owner_path

ISVC_REF = {"apiVersion": "poolgate.dev/v1alpha1", "kind": "InferenceService", "name": "llama",
            "uid": "u", "controller": True}


def dep(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "llama-router", "namespace": "ml", "ownerReferences": list(refs)}}


@pytest.mark.parametrize(("obj", "expected"), [
    pytest.param(dep(ISVC_REF),
                 "/apis/poolgate.dev/v1alpha1/namespaces/ml/inferenceservices/llama", id="owned"),
    pytest.param(dep({**ISVC_REF, "controller": False}), None, id="not-controller"),
    pytest.param(dep({**ISVC_REF, "kind": "ReplicaSet", "apiVersion": "apps/v1"}), None,
                 id="other-kind"),
    pytest.param(dep({**ISVC_REF, "apiVersion": "poolgate.dev/v1beta9"}), None,
                 id="other-version"),
    pytest.param(dep(), None, id="no-owner"),
    pytest.param({}, None, id="no-metadata"),
])
def test_owner_path(obj: dict[str, Any], expected: str | None) -> None:
    assert owner_path(obj) == expected


def test_deployments_path() -> None:
    assert deployments_path("ml") == "/apis/apps/v1/namespaces/ml/deployments"
    assert deployments_path(None) == "/apis/apps/v1/deployments"

"""The InferenceService status computed from its owned Deployment."""

from __future__ import annotations

from typing import Any

import pytest

from poolgate.operator.status import desired_status, ready_condition, status_changed


def deployment(generation: int = 2, observed: int | None = 2, ready: int | None = 2,
               conditions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"observedGeneration": observed, "replicas": 2,
                              "conditions": conditions or []}
    if ready is not None:
        status["readyReplicas"] = ready
    return {"metadata": {"name": "llama-router", "generation": generation}, "status": status}


STALLED = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
            "message": "ReplicaSet has timed out progressing."}]


@pytest.mark.parametrize(("dep", "want", "status", "reason"), [
    pytest.param(None, 2, "False", "DeploymentNotFound", id="missing"),
    pytest.param(deployment(), 2, "True", "Available", id="all-ready"),
    pytest.param(deployment(ready=1), 2, "False", "Progressing", id="one-of-two"),
    pytest.param(deployment(ready=None), 2, "False", "Progressing", id="no-ready-field"),
    pytest.param(deployment(observed=1), 2, "False", "Progressing", id="generation-not-observed"),
    pytest.param(deployment(ready=2), 3, "False", "Progressing", id="scaled-up-spec"),
    pytest.param(deployment(ready=None), 0, "True", "Available", id="zero-replicas"),
    pytest.param(deployment(conditions=STALLED, ready=1), 2, "False",
                 "ProgressDeadlineExceeded", id="stalled"),
])
def test_ready_condition(dep: dict[str, Any] | None, want: int, status: str, reason: str) -> None:
    cond = ready_condition(dep, want, 7)
    assert (cond["type"], cond["status"], cond["reason"]) == ("Ready", status, reason)
    assert cond["observedGeneration"] == 7


def test_ready_message_counts_replicas() -> None:
    assert ready_condition(deployment(ready=1), 2, 1)["message"] == "1/2 router replicas ready"


def test_desired_status_carries_generation_service_and_both_conditions() -> None:
    isvc = {"metadata": {"name": "llama", "generation": 5}}
    reconciled = {"type": "Reconciled", "status": "True"}
    status = desired_status(isvc, reconciled, deployment(ready=1), 2, "llama-router.ml.svc")
    assert status["observedGeneration"] == 5
    assert status["routerService"] == "llama-router.ml.svc"
    assert status["readyReplicas"] == 1
    assert [c["type"] for c in status["conditions"]] == ["Reconciled", "Ready"]


def test_status_changed_only_when_a_written_field_differs() -> None:
    isvc = {"metadata": {"name": "llama", "generation": 5}}
    reconciled = {"type": "Reconciled", "status": "True"}
    status = desired_status(isvc, reconciled, deployment(), 2, "svc")
    assert status_changed(None, status)
    assert status_changed({}, status)
    assert not status_changed(dict(status), status)
    assert not status_changed({**status, "somethingElse": 1}, status)
    assert status_changed({**status, "observedGeneration": 4}, status)

"""An InferenceService's status, computed from its owned Deployment: pure functions.

`Ready` is `True` only when the Deployment controller has seen the Deployment's latest
generation and as many replicas are ready as the InferenceService asks for.
"""

from __future__ import annotations

from typing import Any


def condition(kind: str, ok: bool, reason: str, message: str,
              generation: int | None) -> dict[str, Any]:
    """One status condition, as written (no timestamps, so an unchanged one compares equal)."""
    return {"type": kind, "status": "True" if ok else "False", "reason": reason,
            "message": message, "observedGeneration": generation}


def ready_condition(deployment: dict[str, Any] | None, want_replicas: int,
                    generation: int | None) -> dict[str, Any]:
    """The `Ready` condition for an owned Deployment as read from the API (None: not found).

    Reasons: `DeploymentNotFound`; `ProgressDeadlineExceeded` (the Deployment's own
    `Progressing` condition says so); `Progressing` (generation not yet observed, or fewer
    ready replicas than wanted); `Available` (the only `True`).
    """
    if deployment is None:
        return condition("Ready", False, "DeploymentNotFound",
                         "the router Deployment does not exist (yet)", generation)
    meta, status = deployment.get("metadata", {}), deployment.get("status") or {}
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return condition("Ready", False, "ProgressDeadlineExceeded",
                             str(cond.get("message", "rollout stalled")), generation)
    if meta.get("generation") != status.get("observedGeneration"):
        return condition("Ready", False, "Progressing",
                         f"Deployment generation {meta.get('generation')} not yet observed "
                         f"(observed {status.get('observedGeneration')})", generation)
    ready = int(status.get("readyReplicas") or 0)
    if ready != want_replicas:
        return condition("Ready", False, "Progressing",
                         f"{ready}/{want_replicas} router replicas ready", generation)
    return condition("Ready", True, "Available",
                     f"{ready}/{want_replicas} router replicas ready", generation)


def desired_status(isvc: dict[str, Any], reconciled: dict[str, Any],
                   deployment: dict[str, Any] | None, want_replicas: int,
                   router_service: str) -> dict[str, Any]:
    """The full status of a reconciled InferenceService: `Reconciled` first, then `Ready`."""
    generation = isvc["metadata"].get("generation")
    ready = int(((deployment or {}).get("status") or {}).get("readyReplicas") or 0)
    return {
        "observedGeneration": generation,
        "routerService": router_service,
        "readyReplicas": ready,
        "conditions": [reconciled, ready_condition(deployment, want_replicas, generation)],
    }


def status_changed(current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether writing `desired` would change the status read with the object."""
    current = current or {}
    return any(current.get(key) != value for key, value in desired.items())

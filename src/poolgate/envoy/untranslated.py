"""What a snapshot holds that the bootstrap cannot carry, found up front (the route and cluster
builders add what they meet on the way)."""

from __future__ import annotations

from collections.abc import Iterable

from poolgate.api.problems import Problem
from poolgate.config.snapshot import Snapshot
from poolgate.envoy.model import Notes

EPP_HANDLES = "applied by `poolgate epp` (the endpoint picker), not by Envoy"


def collect(snapshot: Snapshot, warnings: Iterable[Problem], notes: Notes) -> None:
    """Record the kinds and fields Envoy does not see, and the loader's warnings (what poolgate
    itself ignores or refuses is ignored or refused here too)."""
    for (pool_key, _), spec in snapshot.inference_models.items():
        notes.add(f"InferenceModel {spec.namespace}/{spec.name}", "",
                  f"model name, criticality and target-model split on pool {pool_key} are "
                  f"{EPP_HANDLES}")
    for objective in snapshot.objectives.values():
        notes.add(f"InferenceObjective {objective.namespace}/{objective.name}", "spec.priority",
                  f"the priority (chosen by the x-gateway-inference-objective header) is "
                  f"{EPP_HANDLES}")
    for key, policy in snapshot.backend_policies.items():
        if policy.mode is not None:
            notes.add(f"GCPBackendPolicy {policy.namespace}/{policy.name}",
                      "spec.default.balancingMode",
                      f"{policy.mode} balancing of pool {key} (utilisation target, region "
                      "spill-over, in-flight cap) has no Envoy equivalent: Envoy sends each "
                      "request where `poolgate epp` picks, so the balancing is the picker's")
    for key, pool in snapshot.imports.items():
        regions = sorted({ep.region for ep in pool.endpoints if ep.region})
        notes.add(f"InferencePool import {key}", "",
                  "the endpoints of every exporting cluster are one Envoy cluster (a locality "
                  f"per region and cluster: {', '.join(regions) or 'none declared'}); "
                  "multi-cluster balancing by region is not translated")
    for route in snapshot.routes:
        for rule in route.rules:
            security = rule.security
            if security is not None and (security.api_key is not None
                                         or security.jwt is not None):
                notes.add(f"SecurityPolicy {security.namespace}/{security.name}", "",
                          f"API-key / JWT authentication is not translated (poolgate keeps only "
                          f"key digests); HTTPRoute {route.key} rule {rule.index} answers 403 "
                          "in Envoy rather than serve without authentication")
    for problem in warnings:
        subject = f"{problem.kind} {problem.name}" if problem.kind else problem.file
        notes.add(subject, "", f"manifest warning (`poolgate validate` gives it too): "
                               f"{problem.message}")

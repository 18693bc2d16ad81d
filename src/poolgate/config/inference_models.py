"""InferenceModel and InferenceObjective resources resolved against the loaded pools."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from poolgate.api import inference
from poolgate.api.loader import LoadedResource
from poolgate.config._report import Report
from poolgate.config.snapshot import InferenceModelSpec, ObjectiveSpec, TargetModel
from poolgate.core.pools import Pool


def resolve_pool_key(loaded: LoadedResource, ref: inference.PoolObjectReference,
             pools: Mapping[str, Pool], report: Report) -> str | None:
    """The key of the pool a poolRef names, or None (reported) when it cannot be used."""
    key = f"{loaded.resource.namespace}/{ref.name}"
    if ref.kind != "InferencePool" or ref.group not in (inference.GROUP_X, inference.GROUP_V1):
        report.error(loaded, f"spec.poolRef must name an InferencePool, not "
                             f"{ref.kind} in group {ref.group}")
        return None
    if key not in pools:
        # A warning, not an error: Kubernetes accepts dangling references, and the seeds
        # ship objectives whose pool is installed separately (by Helm).
        report.warning(loaded, f"spec.poolRef: InferencePool {key} not found; this "
                               f"{loaded.resource.kind} has no effect")
        return None
    return key


def resolve_inference_models(
    resources: Sequence[LoadedResource], pools: Mapping[str, Pool], report: Report
) -> dict[tuple[str, str], InferenceModelSpec]:
    """InferenceModels by (pool key, modelName); the older of two claims on a name wins."""
    out: dict[tuple[str, str], InferenceModelSpec] = {}
    for loaded in resources:
        res = loaded.resource
        assert isinstance(res, inference.InferenceModel)
        pool_key = resolve_pool_key(loaded, res.spec.pool_ref, pools, report)
        if pool_key is None:
            continue
        targets = tuple(TargetModel(t.name, 1 if t.weight is None else t.weight)
                        for t in res.spec.target_models)
        if targets and sum(t.weight for t in targets) == 0:
            report.error(loaded, "spec.targetModels: every weight is 0")
        slot = (pool_key, res.spec.model_name)
        if slot in out:
            prior = out[slot]
            report.warning(loaded, f"modelName {res.spec.model_name} is already served "
                                   f"on {pool_key} by InferenceModel {prior.namespace}/"
                                   f"{prior.name}; the older one wins")
            continue
        out[slot] = InferenceModelSpec(res.namespace, res.name, res.spec.model_name,
                                       res.spec.criticality, targets, pool_key)
    return out


def resolve_objectives(
    resources: Sequence[LoadedResource], pools: Mapping[str, Pool], report: Report
) -> dict[str, ObjectiveSpec]:
    """InferenceObjectives by name; the older of two with one name wins."""
    out: dict[str, ObjectiveSpec] = {}
    for loaded in resources:
        res = loaded.resource
        assert isinstance(res, inference.InferenceObjective)
        pool_key = resolve_pool_key(loaded, res.spec.pool_ref, pools, report)
        if pool_key is None:
            continue
        if res.name in out:
            prior = out[res.name]
            report.warning(loaded, f"InferenceObjective {res.name} is also defined in "
                                   f"namespace {prior.namespace}; the header "
                                   "x-gateway-inference-objective selects the older one")
            continue
        out[res.name] = ObjectiveSpec(res.namespace, res.name, res.spec.priority or 0, pool_key)
    return out

"""GCPBackendPolicy, HealthCheckPolicy and AutoscalingMetric resolved per pool."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from poolgate.api import gke, inference
from poolgate.api.loader import LoadedResource
from poolgate.balancing.spec import BackendPolicySpec
from poolgate.config._report import Report
from poolgate.config.multicluster import is_import_ref
from poolgate.core.pools import Pool
from poolgate.datalayer.health_spec import ActiveHealthCheckSpec

NAMED_METRIC_PREFIX = "gke.named_metrics."
# Model-server metrics that are a KV-cache utilisation in [0, 1]: what poolgate balances on.
KV_CACHE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage")
DEFAULT_MAX_UTILIZATION_PERCENT = 80

# GCP health-check defaults (compute.v1 HealthCheck): 5 s interval, 5 s timeout, 2 and 2.
HC_INTERVAL = 5.0
HC_TIMEOUT = 5.0
HC_THRESHOLD = 2


def _pool_key(loaded: LoadedResource, target: gke.GKEPolicyTargetReference,
              pools: Mapping[str, Pool], report: Report) -> str | None:
    """The pool a GKE policy's targetRef names, or None (warned) when it names none."""
    key = f"{target.namespace or loaded.resource.namespace}/{target.name}"
    pool_kind = target.kind == "InferencePool" and target.group in (
        inference.GROUP_X, inference.GROUP_V1)
    if not (pool_kind or is_import_ref(target.group, target.kind)):
        report.warning(loaded, f"spec.targetRef: kind {target.kind} in group "
                               f"{target.group or 'core'} is not supported (target a "
                               "GCPInferencePoolImport, InferencePoolImport or InferencePool); "
                               "the policy is ignored")
        return None
    if key not in pools:
        report.warning(loaded, f"spec.targetRef: no InferencePool {key} is declared; the policy "
                               "has no effect")
        return None
    return key


def exported_metrics(resources: Sequence[LoadedResource]) -> dict[str, str]:
    """`exportName` -> model-server metric name, from every AutoscalingMetric (first wins)."""
    out: dict[str, str] = {}
    for loaded in resources:
        res = loaded.resource
        assert isinstance(res, gke.AutoscalingMetric)
        for endpoint in res.spec.endpoints:
            for metric in endpoint.metrics:
                out.setdefault(metric.export_name, metric.name)
    return out


def _source_metric(loaded: LoadedResource, where: str, name: str, exports: Mapping[str, str],
                   report: Report) -> str:
    """The model-server metric a custom metric name stands for (always a KV-cache one)."""
    fallback = KV_CACHE_METRICS[0]
    if not name.startswith(NAMED_METRIC_PREFIX):
        report.warning(loaded, f"{where}.name {name!r} is not a gke.named_metrics.<exportName> "
                               f"metric; poolgate balances on the KV-cache utilisation "
                               f"({fallback}, falling back to vllm:gpu_cache_usage_perc)")
        return fallback
    export = name[len(NAMED_METRIC_PREFIX):]
    source = exports.get(export)
    if source is None:
        report.warning(loaded, f"{where}.name: no AutoscalingMetric exports {export!r}; poolgate "
                               f"balances on the KV-cache utilisation ({fallback}, falling back "
                               "to vllm:gpu_cache_usage_perc)")
        return fallback
    if source not in KV_CACHE_METRICS:
        report.error(loaded, f"{where}.name: {export!r} is exported from {source}, but poolgate "
                             f"balances only on a KV-cache utilisation "
                             f"({', '.join(KV_CACHE_METRICS)})")
    return source


def backend_policy(loaded: LoadedResource, exports: Mapping[str, str],
                   report: Report) -> BackendPolicySpec:
    """One GCPBackendPolicy's `spec.default` as a BackendPolicySpec."""
    res = loaded.resource
    assert isinstance(res, gke.GCPBackendPolicy)
    d = res.spec.default
    timeout = float(d.timeout_sec) if d.timeout_sec is not None else None
    if d.balancing_mode == "IN_FLIGHT":
        return BackendPolicySpec(res.namespace, res.name, "IN_FLIGHT",
                                 max_in_flight=d.max_in_flight_requests_per_endpoint,
                                 dry_run=d.dry_run, timeout=timeout,
                                 traffic_duration=d.traffic_duration)
    if d.balancing_mode != "CUSTOM_METRICS" or not d.custom_metrics:
        return BackendPolicySpec(res.namespace, res.name, None, timeout=timeout,
                                 traffic_duration=d.traffic_duration)
    metrics = d.custom_metrics
    if len(metrics) > 1:
        report.warning(loaded, "spec.default.customMetrics: poolgate balances on the first "
                               f"metric ({metrics[0].name}); the other {len(metrics) - 1} are "
                               "ignored")
    metric = metrics[0]
    where = "spec.default.customMetrics[0]"
    if metric.max_utilization is not None and metric.max_utilization_percent is None:
        report.warning(loaded, f"{where}.maxUtilization: read as maxUtilizationPercent "
                               f"({metric.max_utilization}%); the GCPBackendPolicy field is "
                               "maxUtilizationPercent")
    percent = metric.target_percent
    if percent is None:
        percent = DEFAULT_MAX_UTILIZATION_PERCENT
    source = _source_metric(loaded, where, metric.name, exports, report)
    return BackendPolicySpec(res.namespace, res.name, "CUSTOM_METRICS", metric=metric.name,
                             source_metric=source, max_utilization=percent / 100.0,
                             dry_run=metric.dry_run or d.dry_run, timeout=timeout,
                             traffic_duration=d.traffic_duration)


def resolve_backend_policies(resources: Sequence[LoadedResource], pools: Mapping[str, Pool],
                             exports: Mapping[str, str],
                             report: Report) -> dict[str, BackendPolicySpec]:
    """GCPBackendPolicies by the pool key they target; the older of two on a pool wins."""
    out: dict[str, BackendPolicySpec] = {}
    for loaded in resources:
        res = loaded.resource
        assert isinstance(res, gke.GCPBackendPolicy)
        spec = backend_policy(loaded, exports, report)
        key = _pool_key(loaded, res.spec.target_ref, pools, report)
        if key is None:
            continue
        prior = out.get(key)
        if prior is not None:
            report.warning(loaded, f"pool {key} already has GCPBackendPolicy {prior.key}; the "
                                   "older policy wins and this one is ignored for it")
            continue
        out[key] = spec
    return out


def health_check_policy(loaded: LoadedResource, report: Report) -> ActiveHealthCheckSpec:
    """One HealthCheckPolicy's `spec.default` as an ActiveHealthCheckSpec (GCP defaults)."""
    res = loaded.resource
    assert isinstance(res, gke.HealthCheckPolicy)
    d = res.spec.default
    if d.config.type != "HTTP":
        report.warning(loaded, f"spec.default.config.type {d.config.type}: poolgate probes with "
                               "plain HTTP GET")
    http = d.config.http_health_check or gke.HTTPHealthCheckConfig()
    interval = float(d.check_interval_sec) if d.check_interval_sec is not None else HC_INTERVAL
    timeout = float(d.timeout_sec) if d.timeout_sec is not None else min(HC_TIMEOUT, interval)
    return ActiveHealthCheckSpec(
        type="HTTP", path=http.request_path, method="GET", expected_statuses=frozenset({200}),
        interval=interval, timeout=timeout,
        unhealthy_threshold=d.unhealthy_threshold or HC_THRESHOLD,
        healthy_threshold=d.healthy_threshold or HC_THRESHOLD,
        port=http.port, source=f"HealthCheckPolicy {res.key}",
    )


def resolve_health_check_policies(resources: Sequence[LoadedResource],
                                  pools: Mapping[str, Pool],
                                  report: Report) -> dict[str, ActiveHealthCheckSpec]:
    """HealthCheckPolicies by the pool key they target; the older of two on a pool wins."""
    out: dict[str, ActiveHealthCheckSpec] = {}
    for loaded in resources:
        res = loaded.resource
        assert isinstance(res, gke.HealthCheckPolicy)
        spec = health_check_policy(loaded, report)
        key = _pool_key(loaded, res.spec.target_ref, pools, report)
        if key is None:
            continue
        if key in out:
            report.warning(loaded, f"pool {key} already has {out[key].source}; the older "
                                   "policy wins and this one is ignored for it")
            continue
        out[key] = spec
    return out

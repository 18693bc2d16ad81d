"""Seed 002 resources resolved: imports of per-cluster pools, GCPBackendPolicy, HealthCheckPolicy."""

from __future__ import annotations

from pathlib import Path

import pytest

from poolgate.config.build import load_snapshot
from tests.unit.config.manifests import GATEWAY, load, messages, route

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "seed-002-multi-cluster"

IMPORT_ROUTE = route("r", """
- backendRefs:
  - {group: networking.gke.io, kind: GCPInferencePoolImport, name: p}
""")


def pool_copy(cluster: str, region: str, exported: bool = True) -> str:
    export = '\n    networking.gke.io/export: "True"' if exported else ""
    return f"""
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: p
  annotations:
    poolgate.dev/cluster: {cluster}
    poolgate.dev/region: {region}{export}
spec:
  targetPortNumber: 8000
  selector: {{app: m}}
"""


ENDPOINTS = """
apiVersion: poolgate.dev/v1alpha1
kind: LocalEndpoints
metadata: {name: eps}
spec:
  labels: {app: m}
  addresses:
  - {address: "127.0.0.1:1", cluster: west}
  - {address: "127.0.0.1:2", cluster: east}
  - {address: "127.0.0.1:3", cluster: east, region: us-east1}
"""


def test_seed_002_example_resolves_the_import_to_both_clusters() -> None:
    result = load_snapshot([EXAMPLE])
    assert result.errors == (), messages(result)
    s = result.snapshot
    assert s is not None
    (backend,) = s.routes[0].rules[0].backends
    assert backend.error is None and backend.pool is not None
    placed = {(ep.address, ep.cluster, ep.region) for ep in backend.pool.endpoints}
    assert placed == {
        ("127.0.0.1:18001", "gke-west", "europe-west3"),
        ("127.0.0.1:18002", "gke-west", "europe-west3"),
        ("127.0.0.1:18101", "gke-east", "us-east4"),
        ("127.0.0.1:18102", "gke-east", "us-east4"),
    }
    spec = s.backend_policies["default/vllm-llama3-8b-instruct"]
    assert (spec.mode, spec.max_utilization, spec.dry_run) == ("CUSTOM_METRICS", 0.6, False)
    assert spec.source_metric == "vllm:kv_cache_usage_perc"
    check = s.health_checks["default/vllm-llama3-8b-instruct"]
    assert (check.path, check.port, check.interval, check.timeout) == ("/health", 8000, 5.0, 5.0)
    assert (check.healthy_threshold, check.unhealthy_threshold) == (2, 2)
    assert any("maxUtilizationPercent" in m for m in messages(result))


def test_import_is_the_union_of_exported_copies_only(tmp_path: Path) -> None:
    s = load(tmp_path, GATEWAY, pool_copy("west", "eu"), pool_copy("east", "us", exported=False),
             ENDPOINTS, IMPORT_ROUTE).snapshot
    assert s is not None
    assert [e.address for e in s.pools["default/p"].endpoints] == [
        "127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
    (backend,) = s.routes[0].rules[0].backends
    assert backend.pool is not None
    assert [(e.address, e.region) for e in backend.pool.endpoints] == [("127.0.0.1:1", "eu")]


def test_explicit_region_wins_over_the_copy_region(tmp_path: Path) -> None:
    s = load(tmp_path, GATEWAY, pool_copy("west", "eu"), pool_copy("east", "us"), ENDPOINTS,
             IMPORT_ROUTE).snapshot
    assert s is not None
    regions = {e.address: e.region for e in s.imports["default/p"].endpoints}
    assert regions == {"127.0.0.1:1": "eu", "127.0.0.1:2": "us", "127.0.0.1:3": "us-east1"}


def test_unexported_pool_import_answers_500_with_a_reason(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, pool_copy("west", "eu", exported=False), ENDPOINTS,
                  IMPORT_ROUTE)
    assert result.snapshot is not None
    (backend,) = result.snapshot.routes[0].rules[0].backends
    assert backend.error is not None and "is not exported" in backend.error
    assert sum("not supported" in m for m in messages(result)) == 0


def test_same_pool_twice_without_clusters_is_still_a_duplicate(tmp_path: Path) -> None:
    plain = "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\n" \
            "metadata: {name: p}\nspec: {targetPortNumber: 8000, selector: {app: m}}"
    result = load(tmp_path, GATEWAY, plain, plain)
    assert any("duplicate InferencePool" in m for m in messages(result))


def policy(default: str) -> str:
    return f"""
apiVersion: networking.gke.io/v1
kind: GCPBackendPolicy
metadata: {{name: bp}}
spec:
  targetRef: {{group: networking.gke.io, kind: GCPInferencePoolImport, name: p}}
  default:
{default}
"""


@pytest.mark.parametrize(("default", "error"), [
    ("    balancingMode: IN_FLIGHT\n    maxInFlightRequestsPerEndpoint: 4\n"
     "    customMetrics: [{name: gke.named_metrics.kv-cache}]", "exclude each other"),
    ("    balancingMode: IN_FLIGHT", "needs maxInFlightRequestsPerEndpoint"),
    ("    balancingMode: CUSTOM_METRICS", "needs customMetrics"),
    ("    balancingMode: CUSTOM_METRICS\n    maxInFlightRequestsPerEndpoint: 3\n",
     "cannot use maxInFlightRequestsPerEndpoint"),
    ("    customMetrics: [{name: m, maxUtilization: 60, maxUtilizationPercent: 70}]\n"
     "    balancingMode: CUSTOM_METRICS", "disagree"),
    ("    balancingMode: CUSTOM_METRICS\n"
     "    customMetrics: [{name: m, maxUtilizationPercent: 160}]", "less than or equal to 100"),
    ("    balancingMode: ROUND_ROBIN", "CUSTOM_METRICS"),
])
def test_inconsistent_backend_policies_are_errors(tmp_path: Path, default: str,
                                                  error: str) -> None:
    result = load(tmp_path, GATEWAY, pool_copy("west", "eu"), ENDPOINTS, IMPORT_ROUTE,
                  policy(default))
    assert result.snapshot is None
    assert any(error in m for m in messages(result) if m.startswith("error")), messages(result)


def test_custom_metric_must_be_a_kv_cache_utilisation(tmp_path: Path) -> None:
    metric = """
apiVersion: autoscaling.gke.io/v1beta1
kind: AutoscalingMetric
metadata: {name: m}
spec:
  endpoints: [{port: 8000, metrics: [{name: "vllm:num_requests_running", exportName: running}]}]
"""
    result = load(tmp_path, GATEWAY, pool_copy("west", "eu"), ENDPOINTS, IMPORT_ROUTE, metric,
                  policy("    balancingMode: CUSTOM_METRICS\n"
                         "    customMetrics: [{name: gke.named_metrics.running}]"))
    assert result.snapshot is None
    assert any("KV-cache utilisation" in m for m in messages(result))


def test_in_flight_policy_and_dry_run(tmp_path: Path) -> None:
    s = load(tmp_path, GATEWAY, pool_copy("west", "eu"), ENDPOINTS, IMPORT_ROUTE,
             policy("    balancingMode: IN_FLIGHT\n    maxInFlightRequestsPerEndpoint: 7\n"
                    "    dryRun: true\n    timeoutSec: 30")).snapshot
    assert s is not None
    spec = s.backend_policies["default/p"]
    assert (spec.mode, spec.max_in_flight, spec.dry_run, spec.timeout) == (
        "IN_FLIGHT", 7, True, 30.0)


def test_traffic_policy_active_check_applies_when_no_health_check_policy(tmp_path: Path) -> None:
    btp = """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: t}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
  healthCheck:
    active: {type: HTTP, http: {path: /health}, interval: 1s}
"""
    s = load(tmp_path, GATEWAY, pool_copy("west", "eu"), ENDPOINTS, IMPORT_ROUTE, btp).snapshot
    assert s is not None
    check = s.health_checks["default/p"]
    assert (check.path, check.interval, check.source) == (
        "/health", 1.0, "BackendTrafficPolicy default/t")

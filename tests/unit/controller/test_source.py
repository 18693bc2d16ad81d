"""`ClusterSource.build`: API objects (and -f files) into a snapshot, leaving out broken objects."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest

from poolgate.config.build import PROFILE_NAMES
from poolgate.controller.source import ClusterSource, SourceError
from poolgate.kube.client import KubeClient
from tests.unit.controller.objects import OURS, cluster


def source() -> ClusterSource:
    # build() never touches the API: no client is needed.
    return ClusterSource(cast(KubeClient, None), [], [OURS], lambda: None)


def build(objects: list[dict[str, Any]], paths: list[Path] | None = None) -> Any:
    return source().build(objects, paths or [], PROFILE_NAMES, None)


def test_objects_of_our_gateways_are_built_like_files() -> None:
    built = build(cluster())
    snap = built.result.snapshot
    assert snap is not None
    assert [r.key for r in snap.routes] == ["ml/llm"]
    assert set(snap.pools) == {"ml/llama"}
    assert [lst.port for lst in snap.listeners] == [80]
    assert not built.invalid


def test_a_broken_object_is_left_out_and_the_rest_is_served() -> None:
    broken = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: ml, resourceVersion: "20"}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/v1/(("}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama}]
---
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata: {name: no-ports, namespace: ml, resourceVersion: "21"}
spec: {selector: {matchLabels: {app: x}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-no-ports, namespace: ml, resourceVersion: "22"}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /broken}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: no-ports}]
"""
    built = build(cluster(broken))
    assert set(built.invalid) == {("HTTPRoute", "ml/bad-regex"), ("InferencePool", "ml/no-ports")}
    assert "invalid regular expression" in built.invalid[("HTTPRoute", "ml/bad-regex")][0]
    assert sorted(r.key for r in built.result.snapshot.routes) == ["ml/llm", "ml/to-no-ports"]
    # The route to the left-out pool is served, its backend answering 500 (as Envoy Gateway does).
    (problem,) = built.result.outcomes.route_refs["ml/to-no-ports"]
    assert problem.reason == "BackendNotFound"


def test_a_file_overrides_the_api_object_of_the_same_kind_and_name(tmp_path: Path) -> None:
    override = tmp_path / "route.yaml"
    override.write_text("""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm, namespace: ml}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /local}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama}]
""")
    built = build(cluster(), [override])
    assert built.overridden == {("HTTPRoute", "ml/llm")}
    (route,) = built.result.snapshot.routes
    assert route.rules[0].matches[0].matched_prefix == "/local"


def test_errors_in_a_file_fail_the_whole_build(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {}\n")
    with pytest.raises(SourceError) as caught:
        build(cluster(), [bad])
    assert "bad.yaml" in caught.value.problems[0]


def test_configmaps_read_from_the_api_carry_no_manifests() -> None:
    carrier = """
apiVersion: v1
kind: ConfigMap
metadata: {name: looks-like-manifests, namespace: ml}
data:
  route.yaml: |
    apiVersion: gateway.networking.k8s.io/v1
    kind: HTTPRoute
    metadata: {name: smuggled, namespace: ml}
    spec: {parentRefs: [{name: inference-gateway}]}
"""
    built = build(cluster(carrier))
    assert [r.key for r in built.result.snapshot.routes] == ["ml/llm"]


SEED_002 = Path(__file__).resolve().parents[3] / "examples" / "seed-002-multi-cluster"


def test_seed_002_as_applied_to_one_cluster() -> None:
    """Seed 002's manifests unmodified, the InferencePool its Helm chart installs in this cluster,
    and the GatewayClass the chart creates for the Gateway's class name (outside GKE)."""
    import yaml

    objects = [d for f in sorted((SEED_002 / "seed").glob("*.yaml"))
               for d in yaml.safe_load_all(f.read_text()) if d]
    objects.append(next(iter(yaml.safe_load_all((SEED_002 / "local" / "pools.yaml").read_text()))))
    objects.append({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
                    "metadata": {"name": "gke-l7-cross-regional-internal-managed-mc"},
                    "spec": {"controllerName": OURS}})
    built = build(objects)
    assert not built.invalid
    assert not built.scope.left_out, built.scope.left_out
    (route,) = built.result.snapshot.routes
    (backend,) = route.rules[0].backends
    assert backend.error is None and backend.pool is not None
    assert backend.pool.name == "vllm-llama3-8b-instruct"
    assert "default/vllm-llama3-8b-instruct" in built.result.snapshot.health_checks


def test_in_a_cluster_a_service_backend_is_its_dns_name() -> None:
    from poolgate.discovery.kubernetes import PodCache

    extra = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-service, namespace: ml}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /svc}}]
    backendRefs: [{kind: Service, name: vllm, port: 8000}, {kind: Service, name: noport}]
"""
    built = source().build(cluster(extra), [], PROFILE_NAMES, PodCache())
    route = next(r for r in built.result.snapshot.routes if r.name == "to-service")
    dns, noport = route.rules[0].backends
    assert (dns.host, dns.port, dns.error) == ("vllm.ml.svc", 8000, None)
    assert noport.error == "backendRef to Service ml/noport needs a port"

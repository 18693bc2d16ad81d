from __future__ import annotations

from poolgate.controller.scope import scope
from tests.unit.controller.objects import OURS, cluster


def names(objs: tuple[object, ...]) -> set[tuple[str, str]]:
    return {(o["kind"], o["metadata"]["name"]) for o in objs}  # type: ignore[index]


def test_only_gateways_of_a_class_naming_our_controller_are_served() -> None:
    s = scope(cluster(), [OURS])
    assert s.classes == {"poolgate"}
    assert s.gateways == {"ml/inference-gateway"}
    assert s.foreign_gateways == {"ml/envoy-gateway"}


def test_what_hangs_off_foreign_gateways_only_is_left_out() -> None:
    s = scope(cluster(), [OURS])
    assert names(s.left_out) == {
        ("Gateway", "envoy-gateway"), ("HTTPRoute", "other"), ("InferencePool", "theirs"),
        ("InferenceModel", "theirs-model"), ("BackendTrafficPolicy", "breaker-for-theirs"),
    }
    assert ("InferencePool", "llama") in names(s.objects)
    assert ("GatewayClass", "envoy") in names(s.objects)  # harmless: classes are read, not served


def test_another_controller_name_takes_the_other_class() -> None:
    s = scope(cluster(), ["gateway.envoyproxy.io/gatewayclass-controller"])
    assert s.gateways == {"ml/envoy-gateway"}
    assert ("InferencePool", "theirs") in names(s.objects)
    assert ("InferencePool", "llama") not in names(s.objects)


def test_a_route_shared_with_a_foreign_gateway_is_kept() -> None:
    shared = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: both, namespace: ml}
spec:
  parentRefs: [{name: envoy-gateway}, {name: inference-gateway}]
  rules:
  - backendRefs:
    - {group: inference.networking.k8s.io, kind: InferencePool, name: theirs}
"""
    s = scope(cluster(shared), [OURS])
    assert {("HTTPRoute", "both"), ("InferencePool", "theirs"),
            ("InferenceModel", "theirs-model")} <= names(s.objects)


def test_a_gateway_of_a_class_that_does_not_exist_is_not_served() -> None:
    orphan = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: orphan, namespace: ml}
spec: {gatewayClassName: nobody, listeners: [{name: http, port: 80, protocol: HTTP}]}
"""
    s = scope(cluster(orphan), [OURS])
    assert "ml/orphan" in s.foreign_gateways

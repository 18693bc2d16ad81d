"""The desired status of each object, from a build (Gateway API and Inference Extension shapes)."""

from __future__ import annotations

from typing import Any, cast

from poolgate.config.build import PROFILE_NAMES
from poolgate.controller.source import ClusterSource
from poolgate.controller.status import BuildState, desired_statuses
from poolgate.kube.client import KubeClient
from tests.unit.controller.objects import OURS, cluster, find

NOW = "2026-12-05T10:00:00Z"


def statuses(objects: list[dict[str, Any]], **state: Any) -> dict[tuple[str, str], dict[str, Any]]:
    built = ClusterSource(cast(KubeClient, None), [], [OURS], lambda: None).build(
        objects, [], PROFILE_NAMES, None)
    s = BuildState(built.scope, built.result.outcomes, built.invalid, OURS, **state)
    return {(o["kind"], o["metadata"]["name"]): st
            for o, st in desired_statuses(built.objects, s, NOW)}


def conditions(entry: dict[str, Any]) -> dict[str, tuple[str, str, int]]:
    return {c["type"]: (c["status"], c["reason"], c["observedGeneration"])
            for c in entry["conditions"]}


def test_only_our_objects_get_a_status() -> None:
    found = statuses(cluster())
    assert set(found) == {("GatewayClass", "poolgate"), ("Gateway", "inference-gateway"),
                          ("HTTPRoute", "llm"), ("InferencePool", "llama")}


def test_gateway_class_is_accepted() -> None:
    status = statuses(cluster())[("GatewayClass", "poolgate")]
    assert conditions(status) == {"Accepted": ("True", "Accepted", 1)}


def test_gateway_accepted_programmed_with_addresses_and_listeners() -> None:
    status = statuses(cluster(), addresses=[{"type": "IPAddress", "value": "10.0.0.7"}])[
        ("Gateway", "inference-gateway")]
    assert conditions(status) == {"Accepted": ("True", "Accepted", 2),
                                  "Programmed": ("True", "Programmed", 2)}
    assert status["addresses"] == [{"type": "IPAddress", "value": "10.0.0.7"}]
    http, https = status["listeners"]
    assert (http["name"], http["attachedRoutes"]) == ("http", 1)
    assert http["supportedKinds"] == [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}]
    assert conditions(http)["Accepted"] == ("True", "Accepted", 2)
    assert conditions(http)["Programmed"] == ("True", "Programmed", 2)
    assert conditions(https)["Accepted"] == ("False", "UnsupportedProtocol", 2)
    assert https["supportedKinds"] == [] and https["attachedRoutes"] == 0


def test_gateway_not_programmed_until_its_listeners_serve() -> None:
    status = statuses(cluster(), programmed=False)[("Gateway", "inference-gateway")]
    assert conditions(status)["Programmed"] == ("False", "Pending", 2)


def test_route_parents_accepted_and_resolved() -> None:
    status = statuses(cluster())[("HTTPRoute", "llm")]
    (parent,) = status["parents"]
    assert parent["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                   "name": "inference-gateway"}
    assert parent["controllerName"] == OURS
    assert conditions(parent) == {"Accepted": ("True", "Accepted", 5),
                                  "ResolvedRefs": ("True", "ResolvedRefs", 5)}


ROUTES = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-pool, namespace: ml, generation: 3}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: nope}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-section, namespace: ml, generation: 1}
spec:
  parentRefs: [{name: inference-gateway, sectionName: grpc}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-host, namespace: ml, generation: 1}
spec:
  parentRefs: [{name: inference-gateway, sectionName: http}]
  hostnames: [a.example.com]
  rules:
  - backendRefs: [{kind: Service, name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other-ns, namespace: apps, generation: 1}
spec:
  parentRefs: [{name: inference-gateway, namespace: ml}]
  rules:
  - backendRefs: [{group: example.com, kind: Bucket, name: b}]
"""


def test_route_reasons_as_gateway_api_defines_them() -> None:
    extra = ROUTES + """
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hosts, namespace: ml}
spec:
  gatewayClassName: poolgate
  listeners:
  - {name: http, port: 8080, protocol: HTTP, hostname: b.example.com,
     allowedRoutes: {namespaces: {from: Same}}}
"""
    found = statuses(cluster(extra))
    (missing,) = found[("HTTPRoute", "missing-pool")]["parents"]
    assert conditions(missing) == {"Accepted": ("True", "Accepted", 3),
                                   "ResolvedRefs": ("False", "BackendNotFound", 3)}
    (section,) = found[("HTTPRoute", "wrong-section")]["parents"]
    assert conditions(section)["Accepted"][:2] == ("False", "NoMatchingParent")
    (other,) = found[("HTTPRoute", "other-ns")]["parents"]
    assert conditions(other)["ResolvedRefs"][:2] == ("False", "InvalidKind")
    assert other["parentRef"]["namespace"] == "ml"


def test_route_hostname_and_namespace_refusals() -> None:
    extra = """
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: hosts, namespace: ml}
spec:
  gatewayClassName: poolgate
  listeners:
  - {name: http, port: 8080, protocol: HTTP, hostname: b.example.com,
     allowedRoutes: {namespaces: {from: Same}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: wrong-host, namespace: ml, generation: 1}
spec:
  parentRefs: [{name: hosts}]
  hostnames: [a.example.com]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: from-elsewhere, namespace: apps, generation: 1}
spec:
  parentRefs: [{name: hosts, namespace: ml}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama,
                   namespace: ml}]
"""
    found = statuses(cluster(extra))
    (host,) = found[("HTTPRoute", "wrong-host")]["parents"]
    assert conditions(host)["Accepted"][:2] == ("False", "NoMatchingListenerHostname")
    (ns,) = found[("HTTPRoute", "from-elsewhere")]["parents"]
    assert conditions(ns)["Accepted"][:2] == ("False", "NotAllowedByListeners")
    assert conditions(ns)["ResolvedRefs"][:2] == ("False", "RefNotPermitted")


def test_an_invalid_route_says_why_in_its_status() -> None:
    extra = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad-regex, namespace: ml, generation: 4}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/v1/(("}}]
    backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama}]
"""
    (parent,) = statuses(cluster(extra))[("HTTPRoute", "bad-regex")]["parents"]
    (accepted,) = parent["conditions"]
    assert (accepted["status"], accepted["reason"]) == ("False", "UnsupportedValue")
    assert "invalid regular expression" in accepted["message"]


def test_other_controllers_route_parents_are_kept_and_ours_replaced() -> None:
    objects = cluster()
    theirs = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                            "name": "envoy-gateway"},
              "controllerName": "gateway.envoyproxy.io/gatewayclass-controller",
              "conditions": [{"type": "Accepted", "status": "True"}]}
    stale = {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                           "name": "gone"}, "controllerName": OURS, "conditions": []}
    find(objects, "HTTPRoute", "llm")["status"] = {"parents": [theirs, stale]}
    parents = statuses(objects)[("HTTPRoute", "llm")]["parents"]
    assert parents[0] == theirs
    assert [p["parentRef"]["name"] for p in parents] == ["envoy-gateway", "inference-gateway"]


def test_inference_pool_parents_v1_and_v1alpha2() -> None:
    extra = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata: {name: old-pool, namespace: ml, generation: 2}
spec: {targetPortNumber: 8000, selector: {app: old}, extensionRef: {name: epp}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-old, namespace: ml, generation: 1}
spec:
  parentRefs: [{name: inference-gateway}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: old-pool}]
"""
    found = statuses(cluster(extra))
    (v1,) = found[("InferencePool", "llama")]["parents"]
    assert v1["parentRef"] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                               "namespace": "ml", "name": "inference-gateway"}
    assert v1["controllerName"] == OURS
    assert conditions(v1) == {"Accepted": ("True", "Accepted", 1),
                              "ResolvedRefs": ("True", "ResolvedRefs", 1)}
    (old,) = found[("InferencePool", "old-pool")]["parent"]
    assert "controllerName" not in old
    assert conditions(old)["Accepted"] == ("True", "Accepted", 2)


def test_pool_of_a_route_that_is_not_accepted() -> None:
    extra = """
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: llm, namespace: ml, generation: 5}
spec:
  parentRefs: [{name: inference-gateway, sectionName: nope}]
  rules:
  - backendRefs: [{group: inference.networking.k8s.io, kind: InferencePool, name: llama}]
"""
    objects = [o for o in cluster() if o["metadata"]["name"] != "llm"]
    found = statuses(objects + cluster(extra)[-1:])
    (parent,) = found[("InferencePool", "llama")]["parents"]
    assert conditions(parent)["Accepted"][:2] == ("False", "HTTPRouteNotAccepted")


def test_transition_time_moves_only_when_a_condition_status_changes() -> None:
    objects = cluster()
    gw = find(objects, "Gateway", "inference-gateway")
    gw["status"] = {"conditions": [
        {"type": "Accepted", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "Programmed", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
    status = statuses(objects)[("Gateway", "inference-gateway")]
    times = {c["type"]: c["lastTransitionTime"] for c in status["conditions"]}
    assert times == {"Accepted": "2026-01-01T00:00:00Z", "Programmed": NOW}

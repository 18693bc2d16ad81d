"""Rendering an InferenceService into the router Deployment and Service."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from poolgate.operator.render import render, router_env
from poolgate.operator.spec import DEFAULT_IMAGE, InvalidSpec, parse_spec


def isvc(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "poolgate.dev/v1alpha1", "kind": "InferenceService",
        "metadata": {"name": "llama", "namespace": "ml", "uid": "uid-1", "generation": 3},
        "spec": {"modelRef": "llama-3-8b", **spec},
    }


def env_of(deployment: dict[str, Any]) -> dict[str, Any]:
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def test_minimal_spec_renders_a_deployment_and_a_service_owned_by_the_isvc() -> None:
    deployment, service = render(isvc())
    assert (deployment["kind"], service["kind"]) == ("Deployment", "Service")
    for obj in (deployment, service):
        assert obj["metadata"]["name"] == "llama-router"
        assert obj["metadata"]["namespace"] == "ml"
        assert obj["metadata"]["ownerReferences"] == [{
            "apiVersion": "poolgate.dev/v1alpha1", "kind": "InferenceService", "name": "llama",
            "uid": "uid-1", "controller": True, "blockOwnerDeletion": True}]
    spec = deployment["spec"]
    assert spec["replicas"] == 1
    container = spec["template"]["spec"]["containers"][0]
    assert container["image"] == DEFAULT_IMAGE
    assert container["args"] == ["router"]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"] == {"memory": "256Mi"}
    assert env_of(deployment) == {
        "MODEL_REF": "llama-3-8b", "MAX_CONCURRENCY": "10", "KV_ENDPOINTS": "", "OVERFLOW": "queue",
        "PORT": "8080", "POD_NAME": {"fieldRef": {"fieldPath": "metadata.name"}},
        "KV_KEY_PREFIX": "poolgate:router:ml/llama",
    }
    # the Service selects exactly the pods the Deployment creates
    selector = service["spec"]["selector"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"] == selector
    assert selector.items() <= labels.items()
    assert service["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": "http",
                                         "protocol": "TCP"}]


def test_every_field_reaches_the_router() -> None:
    deployment, _ = render(isvc(
        maxConcurrency=4, kvEndpoints=["redis-0.kv:6379", " ", "redis-1.kv:6379"], replicas=3,
        image="registry.local/poolgate:dev", imagePullPolicy="Always", overflow="reject",
        maxQueue=7, queueTimeoutMs=900, backendUrl="http://gateway.ml.svc:80",
        simulatedLatencyMs=5, globalMaxConcurrency=12, kvFailureMode="closed", kvLeaseMs=3000,
        port=9000, resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2", "memory": "1Gi"}},
    ))
    env = env_of(deployment)
    assert env["MAX_CONCURRENCY"] == "4"
    assert env["KV_ENDPOINTS"] == "redis-0.kv:6379,redis-1.kv:6379"
    assert (env["OVERFLOW"], env["MAX_QUEUE"], env["QUEUE_TIMEOUT_MS"]) == ("reject", "7", "900")
    assert env["BACKEND_URL"] == "http://gateway.ml.svc:80"
    assert (env["GLOBAL_MAX_CONCURRENCY"], env["KV_FAILURE_MODE"], env["KV_LEASE_MS"]) == (
        "12", "closed", "3000")
    assert (env["PORT"], env["SIMULATED_LATENCY_MS"]) == ("9000", "5")
    assert deployment["spec"]["replicas"] == 3
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert (container["image"], container["imagePullPolicy"]) == ("registry.local/poolgate:dev", "Always")
    assert container["ports"][0]["containerPort"] == 9000
    assert container["resources"] == {"requests": {"cpu": "1"},
                                      "limits": {"cpu": "2", "memory": "1Gi"}}


def test_rendered_env_is_accepted_by_the_router_config() -> None:
    from poolgate.router.config import load_config

    deployment, _ = render(isvc(kvEndpoints=["r:6379"], globalMaxConcurrency=2, overflow="reject"))
    env = {k: v for k, v in env_of(deployment).items() if isinstance(v, str)}
    config = load_config(env)
    assert config.kv_key == "poolgate:router:ml/llama:llama-3-8b"


def test_render_is_pure() -> None:
    obj = isvc(kvEndpoints=["r:1"])
    before = copy.deepcopy(obj)
    assert render(obj) == render(obj)
    assert obj == before


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        pytest.param({"modelRef": ""}, "spec.modelRef", id="empty-model"),
        pytest.param({"maxConcurrency": 0}, "spec.maxConcurrency", id="zero-concurrency"),
        pytest.param({"kvEndpoints": ["redis"]}, "is not host:port", id="bad-endpoint"),
        pytest.param({"overflow": "spill"}, "spec.overflow", id="overflow"),
        pytest.param({"replicas": -1}, "spec.replicas", id="replicas"),
        pytest.param({"backendUrl": "gateway:80"}, "http(s) URL", id="backend"),
        pytest.param({"globalMaxConcurrency": 3}, "needs spec.kvEndpoints", id="global-no-kv"),
        pytest.param({"maxConcurency": 3}, "spec.maxConcurency", id="typo"),
    ],
)
def test_invalid_specs_are_explained(spec: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InvalidSpec) as info:
        render(isvc(**spec))
    assert fragment in str(info.value)


def test_missing_spec() -> None:
    with pytest.raises(InvalidSpec, match="spec is missing"):
        parse_spec({"metadata": {"name": "x"}})


def test_env_names_match_the_router_documentation() -> None:
    spec = parse_spec(isvc())
    names = [e["name"] for e in router_env(spec, "ns", "n")]
    assert names[:3] == ["MODEL_REF", "MAX_CONCURRENCY", "KV_ENDPOINTS"]


@pytest.mark.parametrize(("change", "variable", "value"), [
    pytest.param({"modelRef": "llama-3-70b"}, "MODEL_REF", "llama-3-70b", id="model"),
    pytest.param({"maxConcurrency": 4}, "MAX_CONCURRENCY", "4", id="concurrency"),
    pytest.param({"kvEndpoints": ["a:1", "b:2"]}, "KV_ENDPOINTS", "a:1,b:2", id="kv"),
])
def test_a_router_env_change_changes_only_the_pod_templates_env(
        change: dict[str, Any], variable: str, value: str) -> None:
    before = render(isvc(kvEndpoints=["a:1"]))[0]
    after = render(isvc(**{"kvEndpoints": ["a:1"], **change}))[0]
    assert env_of(after)[variable] == value
    assert env_of(after) != env_of(before)
    # the template is what Kubernetes rolls out on; nothing else about the Deployment moves
    strip = copy.deepcopy(after)
    strip["spec"]["template"]["spec"]["containers"][0]["env"] = env_of(before)
    unchanged = copy.deepcopy(before)
    unchanged["spec"]["template"]["spec"]["containers"][0]["env"] = env_of(before)
    assert strip == unchanged


def test_an_unchanged_spec_renders_identically() -> None:
    obj = isvc(kvEndpoints=["a:1"], maxConcurrency=3)
    relabelled = copy.deepcopy(obj)
    relabelled["metadata"]["labels"] = {"team": "ml"}
    relabelled["metadata"]["generation"] = 9
    assert render(obj) == render(relabelled)

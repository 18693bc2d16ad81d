from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from poolgate.api import _yaml, inference, local
from poolgate.api.envoy import BackendTrafficPolicy
from poolgate.api.gateway import HTTPRoute
from poolgate.api.loader import load_manifests
from poolgate.api.local import parse_address
from poolgate.api.problems import Problem

POOL_V1ALPHA2 = """
apiVersion: inference.networking.x-k8s.io/v1alpha2
kind: InferencePool
metadata:
  name: pool-a
spec:
  targetPortNumber: 8000
  selector:
    app: a
  extensionRef:
    name: epp
    failureMode: FailOpen
"""

POOL_V1 = """
apiVersion: inference.networking.k8s.io/v1
kind: InferencePool
metadata:
  name: pool-b
  namespace: team
spec:
  targetPorts:
  - number: 9000
  - number: 9001
  selector:
    matchLabels:
      app: b
  endpointPickerRef:
    name: epp-b
    port:
      number: 9002
"""


def write(dir_: Path, name: str, text: str) -> Path:
    path = dir_ / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


def test_multi_document_file_loads_every_resource_in_order(tmp_path: Path) -> None:
    f = write(tmp_path, "pools.yaml", POOL_V1ALPHA2 + "---\n" + POOL_V1)
    out = load_manifests([f])
    assert out.problems == []
    names = [r.resource.name for r in out.resources]
    assert names == ["pool-a", "pool-b"]
    assert [r.source.doc_index for r in out.resources] == [1, 2]
    assert out.resources[1].source.line == 14  # "---" on 12, a blank line, then apiVersion


def test_both_inference_pool_versions_are_typed(tmp_path: Path) -> None:
    out = load_manifests([write(tmp_path, "p.yaml", POOL_V1ALPHA2 + "---\n" + POOL_V1)])
    a, b = (r.resource for r in out.resources)
    assert isinstance(a, inference.InferencePoolV1Alpha2)
    assert a.spec.target_port_number == 8000
    assert a.spec.selector == {"app": "a"}
    assert a.spec.extension_ref is not None and a.spec.extension_ref.failure_mode == "FailOpen"
    assert a.namespace == "default"
    assert isinstance(b, inference.InferencePoolV1)
    assert [p.number for p in b.spec.target_ports] == [9000, 9001]
    assert b.spec.selector.match_labels == {"app": "b"}
    assert b.spec.endpoint_picker_ref is not None
    assert b.spec.endpoint_picker_ref.failure_mode == "FailClose"
    assert b.key == "team/pool-b"


def test_directories_are_searched_recursively_in_sorted_order(tmp_path: Path) -> None:
    write(tmp_path, "b/second.yml", POOL_V1)
    write(tmp_path, "a/first.yaml", POOL_V1ALPHA2)
    write(tmp_path, "a/notes.txt", "not yaml: [")
    out = load_manifests([tmp_path])
    assert out.problems == []
    assert [r.resource.name for r in out.resources] == ["pool-a", "pool-b"]


def test_a_configmap_volume_loads_each_resource_once(tmp_path: Path) -> None:
    # kubelet mounts a ConfigMap as `..<timestamp>/file`, `..data -> ..<timestamp>`, `file -> ..data/file`.
    write(tmp_path, "..2026_11_24_10_00_00.123/pool.yaml", POOL_V1ALPHA2)
    (tmp_path / "..data").symlink_to(tmp_path / "..2026_11_24_10_00_00.123")
    (tmp_path / "pool.yaml").symlink_to(tmp_path / "..data" / "pool.yaml")
    out = load_manifests([tmp_path])
    assert out.problems == []
    assert [r.resource.name for r in out.resources] == ["pool-a"]


def test_kinds_poolgate_does_not_act_on_are_skipped_and_counted(tmp_path: Path) -> None:
    f = write(tmp_path, "x.yaml", """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: d}
        spec: {replicas: 1}
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: s}
        ---
        apiVersion: networking.gke.io/v1
        kind: FrontendConfig
        metadata: {name: g}
        ---
        ---
        apiVersion: v1
        kind: Service
        metadata: {name: s2}
    """)
    out = load_manifests([f])
    assert out.problems == []
    assert out.resources == []
    assert dict(out.skipped) == {"Deployment": 1, "Service": 2, "FrontendConfig": 1}


def test_unsupported_kind_in_a_gateway_group_is_a_warning(tmp_path: Path) -> None:
    f = write(tmp_path, "x.yaml", """
        apiVersion: gateway.networking.k8s.io/v1
        kind: GRPCRoute
        metadata: {name: g}
    """)
    out = load_manifests([f])
    assert [p.severity for p in out.problems] == ["warning"]
    assert "does not act on" in out.problems[0].message


def test_field_error_names_file_document_line_kind_and_path(tmp_path: Path) -> None:
    f = write(tmp_path, "route.yaml", POOL_V1ALPHA2 + """---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
spec:
  rules:
  - backendRefs:
    - name: pool-a
      weight: heavy
""")
    out = load_manifests([f])
    assert len(out.problems) == 1
    p = out.problems[0]
    assert (p.severity, p.doc_index, p.line, p.kind, p.name) == ("error", 2, 21, "HTTPRoute", "r")
    assert "spec.rules[0].backendRefs[0].weight" in p.message
    assert "valid integer" in p.message and "'heavy'" in p.message
    assert str(p) == f"{f}:21 (doc 2, HTTPRoute/r): {p.message}"
    assert [r.resource.name for r in out.resources] == ["pool-a"]


def test_missing_required_field_points_at_its_parent(tmp_path: Path) -> None:
    f = write(tmp_path, "pool.yaml", """
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferencePool
        metadata:
          name: p
        spec:
          selector:
            app: a
    """)
    (p,) = load_manifests([f]).problems
    assert p.line == 6
    assert p.message == "spec.targetPortNumber: required field is missing"


@pytest.mark.parametrize(
    ("doc", "needle"),
    [
        pytest.param("kind: InferencePool\nmetadata: {name: p}\n", "apiVersion", id="no-apiVersion"),
        pytest.param("apiVersion: v1\nmetadata: {name: p}\n", "kind", id="no-kind"),
        pytest.param("- a\n- b\n", "must be a mapping", id="not-a-mapping"),
        pytest.param("apiVersion: poolgate.dev/v1alpha1\nkind: LocalEndpoint\nmetadata: {name: x}\n",
                     "unknown kind 'LocalEndpoint'", id="typo-in-our-group"),
        pytest.param("apiVersion: inference.networking.k8s.io/v1alpha2\nkind: InferencePool\n"
                     "metadata: {name: x}\n", "unsupported apiVersion", id="wrong-version"),
        pytest.param("apiVersion: v1\nkind: [unclosed\n", "invalid YAML", id="bad-yaml"),
    ],
)
def test_malformed_documents_are_errors(tmp_path: Path, doc: str, needle: str) -> None:
    f = write(tmp_path, "bad.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n" + doc)
    problems = load_manifests([f]).problems
    assert len(problems) == 1
    assert problems[0].severity == "error"
    assert problems[0].doc_index == 2
    assert problems[0].line is not None and problems[0].line >= 5
    assert needle in problems[0].message


def test_missing_path_is_an_error(tmp_path: Path) -> None:
    (p,) = load_manifests([tmp_path / "nope.yaml"]).problems
    assert p.severity == "error" and p.message == "no such file or directory"


def test_bad_durations_and_enums_in_a_policy(tmp_path: Path) -> None:
    f = write(tmp_path, "btp.yaml", """
        apiVersion: gateway.envoyproxy.io/v1alpha1
        kind: BackendTrafficPolicy
        metadata: {name: p}
        spec:
          targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}]
          timeout:
            http: {requestTimeout: 10}
          retry:
            retryOn: {triggers: [sometimes]}
    """)
    messages = sorted(p.message for p in load_manifests([f]).problems)
    assert len(messages) == 2
    assert messages[0].startswith("spec.retry.retryOn.triggers[0]: input should be")
    assert messages[1].startswith("spec.timeout.http.requestTimeout: invalid duration 10")


def test_policy_fields_are_parsed(tmp_path: Path) -> None:
    f = write(tmp_path, "btp.yaml", """
        apiVersion: gateway.envoyproxy.io/v1alpha1
        kind: BackendTrafficPolicy
        metadata: {name: p}
        spec:
          targetRef: {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}
          circuitBreaker:
            maxParallelRequests: 1
            perEndpoint: {maxConnections: 3}
          healthCheck:
            passive: {consecutive5XxErrors: 2, baseEjectionTime: 1m}
          futureField: {kept: true}
    """)
    (r,) = load_manifests([f]).resources
    btp = r.resource
    assert isinstance(btp, BackendTrafficPolicy)
    assert btp.spec.circuit_breaker is not None
    assert btp.spec.circuit_breaker.per_endpoint is not None
    assert btp.spec.circuit_breaker.per_endpoint.max_connections == 3
    assert btp.spec.health_check is not None and btp.spec.health_check.passive is not None
    assert btp.spec.health_check.passive.consecutive_5xx_errors == 2
    assert btp.spec.health_check.passive.base_ejection_time == 60.0
    assert [t.name for t in btp.spec.targets] == ["r"]


def test_route_defaults_follow_the_gateway_api(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: r}
        spec:
          rules:
          - backendRefs: [{name: svc}]
    """)
    route = load_manifests([f]).resources[0].resource
    assert isinstance(route, HTTPRoute)
    ref = route.spec.rules[0].backend_refs[0]
    assert (ref.group, ref.kind, ref.weight) == ("", "Service", 1)


def test_local_endpoints_accept_strings_and_objects(tmp_path: Path) -> None:
    f = write(tmp_path, "le.yaml", """
        apiVersion: poolgate.dev/v1alpha1
        kind: LocalEndpoints
        metadata: {name: l}
        spec:
          labels: {app: a}
          region: europe-west3
          addresses:
          - 127.0.0.1:8001
          - {address: "[::1]:8002", cluster: east, region: us-east4, labels: {zone: b}}
    """)
    (r,) = load_manifests([f]).resources
    le = r.resource
    assert isinstance(le, local.LocalEndpoints)
    assert [a.address for a in le.spec.addresses] == ["127.0.0.1:8001", "[::1]:8002"]
    assert le.spec.addresses[1].labels == {"zone": "b"}


def test_invalid_selector_label_is_an_error(tmp_path: Path) -> None:
    f = write(tmp_path, "p.yaml", """
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferencePool
        metadata: {name: p}
        spec:
          targetPortNumber: 8000
          selector: {"app": "not valid!"}
    """)
    (p,) = load_manifests([f]).problems
    assert "spec.selector" in p.message and "label value" in p.message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1", ("127.0.0.1", None), id="host"),
        pytest.param("127.0.0.1:8000", ("127.0.0.1", 8000), id="host-port"),
        pytest.param("model-0.local:80", ("model-0.local", 80), id="name-port"),
        pytest.param("[::1]:9000", ("::1", 9000), id="ipv6-port"),
        pytest.param("[::1]", ("::1", None), id="ipv6"),
    ],
)
def test_parse_address(text: str, expected: tuple[str, int | None]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("h:0", id="port-zero"),
        pytest.param("h:65536", id="port-too-big"),
        pytest.param("h:", id="empty-port"),
        pytest.param("::1", id="bare-ipv6"),
        pytest.param("http://h:80", id="url"),
        pytest.param("[::1", id="unclosed"),
    ],
)
def test_parse_address_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="address"):
        parse_address(text)


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        pytest.param(Problem("error", "a.yaml", 2, 7, "HTTPRoute", "r", "bad"),
                     "a.yaml:7 (doc 2, HTTPRoute/r): bad", id="full"),
        pytest.param(Problem("warning", "a.yaml", 1, None, None, None, "odd"),
                     "a.yaml (doc 1): odd", id="no-line-no-kind"),
        pytest.param(Problem("error", "dir", 0, None, None, None, "no such file or directory"),
                     "dir: no such file or directory", id="whole-path"),
    ],
)
def test_problem_text(problem: Problem, text: str) -> None:
    assert str(problem) == text


def test_a_key_written_twice_is_an_error_naming_file_line_and_key(tmp_path: Path) -> None:
    # YAML keeps the last value: this Gateway would silently have been read as an HTTPRoute.
    f = write(tmp_path, "gw.yaml", """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: gw}
        kind: HTTPRoute
        spec:
          gatewayClassName: c
          listeners: [{name: http, port: 80, protocol: HTTP}]
    """)
    out = load_manifests([f])
    (p,) = out.problems
    assert (p.severity, p.doc_index, p.line) == ("error", 1, 4)
    assert p.message.startswith("duplicate key 'kind' (first on line 2)")
    assert str(p).startswith(f"{f}:4 (doc 1): duplicate key 'kind'")
    assert out.resources == []


@pytest.mark.parametrize(
    ("spec", "key", "line"),
    [
        pytest.param("spec:\n  targetPortNumber: 8000\n  targetPortNumber: 9000\n  selector: {app: a}\n",
                     "targetPortNumber", 10, id="nested"),
        pytest.param("spec:\n  targetPortNumber: 8000\n  selector: {app: a, app: b}\n",
                     "app", 10, id="flow-mapping"),
        pytest.param("spec:\n  targetPortNumber: 8000\n  selector: {app: a}\n"
                     "  extensionRef:\n    name: epp\n    failureMode: FailOpen\n"
                     "    failureMode: FailClose\n", "failureMode", 14, id="deeper"),
    ],
)
def test_duplicate_keys_are_found_at_any_depth(tmp_path: Path, spec: str, key: str,
                                               line: int) -> None:
    f = write(tmp_path, "p.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\n"
              "apiVersion: inference.networking.x-k8s.io/v1alpha2\nkind: InferencePool\n"
              "metadata: {name: p}\n" + spec)
    (p,) = load_manifests([f]).problems
    assert (p.severity, p.doc_index, p.line) == ("error", 2, line)
    assert f"duplicate key {key!r}" in p.message


def test_duplicate_keys_in_list_items_are_each_reported(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: r}
        spec:
          rules:
          - backendRefs:
            - {name: a, weight: 1, weight: 2}
            - name: b
              port: 80
              port: 81
    """)
    problems = load_manifests([f]).problems
    assert [(p.severity, p.line) for p in problems] == [("error", 7), ("error", 10)]
    assert "duplicate key 'weight'" in problems[0].message
    assert "duplicate key 'port'" in problems[1].message


def test_merge_keys_and_equal_keys_in_sibling_mappings_are_not_duplicates(tmp_path: Path) -> None:
    f = write(tmp_path, "r.yaml", """
        apiVersion: gateway.networking.k8s.io/v1
        kind: HTTPRoute
        metadata: {name: r}
        spec:
          rules:
          - backendRefs:
            - &ref {name: a, port: 80}
            - <<: *ref
              name: b
    """)
    out = load_manifests([f])
    assert out.problems == []
    route = out.resources[0].resource
    assert isinstance(route, HTTPRoute)
    assert [(b.name, b.port) for b in route.spec.rules[0].backend_refs] == [("a", 80), ("b", 80)]


@pytest.mark.parametrize("base", [
    pytest.param(yaml.SafeLoader, id="python"),
    pytest.param(getattr(yaml, "CSafeLoader", None), id="libyaml",
                 marks=pytest.mark.skipif(not hasattr(yaml, "CSafeLoader"),
                                          reason="PyYAML built without libyaml")),
])
def test_duplicate_keys_are_found_by_either_yaml_loader(base: type[yaml.SafeLoader]) -> None:
    loader_class = type("Loader", (_yaml.DuplicateKeyCheck, base), {})
    (node,) = _yaml_nodes(loader_class, "a: 1\nb: {x: 1}\nc: [{k: 1, k: 2}]\na: 3\n")
    loader = loader_class("")
    try:
        data = loader.construct_document(node)
    finally:
        loader.dispose()
    assert data == {"a": 3, "b": {"x": 1}, "c": [{"k": 2}]}
    assert loader.duplicates == [_yaml.DuplicateKey("a", 4, 1), _yaml.DuplicateKey("k", 3, 3)]


def _yaml_nodes(loader_class: type[yaml.SafeLoader], text: str) -> list[yaml.Node]:
    loader = loader_class(text)
    try:
        return [loader.get_node() for _ in iter(loader.check_node, False)]
    finally:
        loader.dispose()


def test_a_misspelt_kind_is_a_warning_naming_the_kind_meant(tmp_path: Path) -> None:
    f = write(tmp_path, "x.yaml", """
        apiVersion: inference.networking.x-k8s.io/v1alpha2
        kind: InferencePol
        metadata: {name: p}
        spec: {targetPortNumber: 8000, selector: {app: a}}
    """)
    out = load_manifests([f])
    (p,) = out.problems
    assert (p.severity, p.line, p.kind) == ("warning", 2, "InferencePol")  # the line of `kind`
    assert p.message == ("unknown kind 'InferencePol' in inference.networking.x-k8s.io "
                         "(did you mean InferencePool?); it is ignored")
    assert dict(out.skipped) == {"InferencePol": 1}


CARRIER = """
apiVersion: v1
kind: ConfigMap
metadata:
  name: manifests
  namespace: team
data:
  settings.json: '{"not": "a manifest"}'
  other.yaml: |
    replicas: 3
  pools.yaml: |
    apiVersion: inference.networking.k8s.io/v1
    kind: InferencePool
    metadata:
      name: pool-b
      namespace: team
    spec:
      targetPorts:
      - number: 9000
      selector:
        matchLabels:
          app: b
      endpointPickerRef:
        name: epp-b
    ---
    apiVersion: inference.networking.x-k8s.io/v1alpha2
    kind: InferencePool
    metadata:
      name: broken
    spec:
      targetPortNumber: many
      selector: {app: a}
      extensionRef: {name: epp}
"""


def test_a_configmap_carrying_manifests_loads_them_with_lines_in_its_file(tmp_path: Path) -> None:
    path = write(tmp_path, "cm.yaml", CARRIER)
    out = load_manifests([path])
    assert [r.resource.name for r in out.resources] == ["pool-b"]
    assert out.skipped["ConfigMap"] == 1
    [problem] = [p for p in out.problems if p.severity == "error"]
    # The line in cm.yaml itself, under FILE#KEY.
    assert problem.file == f"{path}#pools.yaml"
    assert path.read_text().splitlines()[problem.line - 1].strip() == "targetPortNumber: many"
    assert "spec.targetPortNumber" in str(problem)
    [source] = [r.source for r in out.resources]
    assert path.read_text().splitlines()[source.line - 1].strip() == (
        "apiVersion: inference.networking.k8s.io/v1")

"""`poolgate validate` as a user runs it: real process, real files, exit codes and messages."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
import yaml

from tests.support.processes import ProcessGroup, poolgate_command

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "seed-000-circuit-breaker"
SEED_002 = REPO / "tests" / "unit" / "config" / "fixtures" / "seed-002"


def run_validate(procs: ProcessGroup, *args: str) -> tuple[int, str]:
    proc = procs.start(poolgate_command("validate", *args), cwd=REPO)
    code = proc.proc.wait(timeout=60)
    return code, proc.output()


def test_seed_000_example_is_valid(procs: ProcessGroup) -> None:
    code, out = run_validate(procs, "-f", str(EXAMPLE))
    assert code == 0, out
    assert "0 error(s), 0 warning(s): valid" in out
    assert "1 InferencePool" in out and "1 BackendTrafficPolicy" in out and "1 LocalEndpoints" in out
    assert "2 Deployment" in out  # the seed's Deployments are skipped, not rejected


def test_files_can_be_given_one_by_one(procs: ProcessGroup) -> None:
    files = [a for f in sorted(EXAMPLE.glob("*.yaml")) for a in ("-f", str(f))]
    code, out = run_validate(procs, *files)
    assert code == 0, out


def test_warnings_pass_unless_strict(procs: ProcessGroup) -> None:
    code, out = run_validate(procs, "-f", str(SEED_002))
    assert code == 0, out
    assert "warning: " in out and "GCPInferencePoolImport" in out
    code, out = run_validate(procs, "--strict", "-f", str(SEED_002))
    assert code == 1, out
    assert "(--strict: warnings are fatal)" in out


def test_broken_manifests_fail_with_file_and_document_position(
    procs: ProcessGroup, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text(textwrap.dedent("""
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata: {name: gw}
        spec:
          gatewayClassName: c
          listeners: [{name: http, port: 80, protocol: HTTP}]
        ---
        apiVersion: gateway.envoyproxy.io/v1alpha1
        kind: BackendTrafficPolicy
        metadata:
          name: cb
        spec:
          targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
          timeout:
            http:
              requestTimeout: 10 seconds
    """).lstrip())
    code, out = run_validate(procs, "-f", str(broken))
    assert code == 1, out
    assert (f"error: {broken}:16 (doc 2, BackendTrafficPolicy/cb): "
            "spec.timeout.http.requestTimeout: invalid duration '10 seconds'") in out
    assert "1 error(s)" in out and ": invalid" in out


def test_missing_file_is_an_error(procs: ProcessGroup, tmp_path: Path) -> None:
    code, out = run_validate(procs, "-f", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert "nope.yaml: no such file or directory" in out


def test_annotations_may_name_profiles_of_a_scheduler_config(procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, manifests)
    rules = manifests / "inference_rules.yaml"
    rules.write_text(rules.read_text().replace(
        "kind: InferencePool\nmetadata:\n",
        "kind: InferencePool\nmetadata:\n  annotations: {poolgate.dev/scheduler-profile: mine}\n", 1))
    code, out = run_validate(procs, "-f", str(manifests))
    assert code == 1 and "unknown scheduler profile 'mine'" in out, out
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profile: mine\nplugins: [{type: queue-scorer}]\n")
    code, out = run_validate(procs, "-f", str(manifests), "--scheduler-config", str(profiles))
    assert "unknown scheduler profile" not in out, out


def example_with(tmp_path: Path, file: str, old: str, new: str) -> Path:
    """A copy of the seed-000 example with `old` replaced by `new` once in `file`."""
    manifests = tmp_path / "manifests"
    shutil.copytree(EXAMPLE, manifests)
    path = manifests / file
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return manifests


def test_a_key_written_twice_fails_naming_file_line_and_key(procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    # Line 14 is the Gateway's `kind: Gateway`; YAML alone would read the document as an HTTPRoute.
    manifests = example_with(tmp_path, "gateway.yaml", "  namespace: default\nspec:\n"
                             "  gatewayClassName", "  namespace: default\nkind: HTTPRoute\nspec:\n"
                             "  gatewayClassName")
    code, out = run_validate(procs, "-f", str(manifests))
    assert code == 1, out
    assert (f"error: {manifests / 'gateway.yaml'}:20 (doc 2): duplicate key 'kind' (first on "
            "line 14)") in out
    assert ": invalid" in out


def test_a_misspelt_policy_field_is_a_warning_naming_the_field_meant(procs: ProcessGroup,
                                                                     tmp_path: Path) -> None:
    manifests = example_with(tmp_path, "gateway.yaml", "maxParallelRequests: 1",
                             "maxParallelRequest: 1")
    code, out = run_validate(procs, "-f", str(manifests))
    assert code == 0, out
    assert (f"warning: {manifests / 'gateway.yaml'}:80 (doc 5, "
            "BackendTrafficPolicy/circuitbreaker-for-route): "
            "spec.circuitBreaker.maxParallelRequest is not a field poolgate supports; it is "
            "ignored (did you mean maxParallelRequests?)") in out
    assert "0 error(s), 1 warning(s): valid" in out
    code, out = run_validate(procs, "--strict", "-f", str(manifests))
    assert code == 1, out
    assert "(--strict: warnings are fatal)" in out


def test_a_misspelt_kind_is_a_warning_naming_the_kind_meant(procs: ProcessGroup,
                                                            tmp_path: Path) -> None:
    manifests = example_with(tmp_path, "inference_rules.yaml", "kind: InferencePool\nmetadata",
                             "kind: InferencePol\nmetadata")
    code, out = run_validate(procs, "-f", str(manifests))
    assert code == 0, out
    assert (f"warning: {manifests / 'inference_rules.yaml'}:5 (doc 1, "
            "InferencePol/vllm-llama2-7b-pool): unknown kind 'InferencePol' in "
            "inference.networking.x-k8s.io (did you mean InferencePool?); it is ignored") in out
    assert "1 InferencePol" in out  # counted among the skipped kinds
    code, out = run_validate(procs, "--strict", "-f", str(manifests))
    assert code == 1, out


def test_a_configmap_is_validated_for_the_manifests_it_carries(procs: ProcessGroup,
                                                                tmp_path: Path) -> None:
    # As the chart's gateway.extraManifests renders one: each *.yaml key a manifest file.
    seed = REPO / "examples" / "seed-000-circuit-breaker"
    data = {name: (seed / name).read_text() for name in ("gateway.yaml", "inference_rules.yaml")}
    configmap = tmp_path / "configmap.yaml"
    configmap.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "poolgate-extra-manifests", "namespace": "poolgate"},
        "data": {**data, "inference_rules.yaml": data["inference_rules.yaml"].replace(
            "targetPortNumber: 8000", "targetPortNumber: 80000")}}, width=200))
    code, out = run_validate(procs, "-f", str(configmap))
    assert code == 1, out
    # Before: "loaded: none" and "valid" without a look at what the ConfigMap carries.
    assert "loaded: 1 BackendTrafficPolicy, 1 EnvoyProxy, 1 Gateway, 1 GatewayClass, 1 HTTPRoute" in out
    assert f"{configmap}#inference_rules.yaml:" in out  # problems point into the ConfigMap's file

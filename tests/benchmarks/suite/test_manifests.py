"""The gateway configuration the suite writes."""

from __future__ import annotations

from pathlib import Path

import yaml

from benchmarks.suite.manifests import gateway_manifests, write_config_dir


def test_manifests_route_everything_to_a_v1_pool_selecting_the_sim() -> None:
    docs = list(yaml.safe_load_all(gateway_manifests()))
    kinds = [d["kind"] for d in docs]
    assert kinds == ["Gateway", "HTTPRoute", "InferencePool"]
    gateway, route, pool = docs
    assert gateway["spec"]["listeners"][0]["port"] == 80
    rule = route["spec"]["rules"][0]
    assert rule["matches"][0]["path"] == {"type": "PathPrefix", "value": "/"}
    assert rule["backendRefs"][0]["kind"] == "InferencePool"
    assert rule["backendRefs"][0]["name"] == pool["metadata"]["name"]
    assert pool["apiVersion"] == "inference.networking.k8s.io/v1"
    assert pool["spec"]["selector"] == {"matchLabels": {"app": "sim"}}
    assert pool["spec"]["targetPorts"] == [{"number": 8000}]


def test_write_config_dir(tmp_path: Path) -> None:
    endpoints = write_config_dir(tmp_path / "cfg")
    assert endpoints == tmp_path / "cfg" / "endpoints.yaml"
    assert not endpoints.exists()  # the simulator writes it
    assert (tmp_path / "cfg" / "gateway.yaml").read_text() == gateway_manifests()

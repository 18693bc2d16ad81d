"""The shipped CRD and example agree with the InferenceServiceSpec the operator validates."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from poolgate.operator.render import render
from poolgate.operator.spec import GROUP, KIND, PLURAL, VERSION, InferenceServiceSpec

DEPLOY = Path(__file__).resolve().parents[3] / "deploy"


def crd() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "crds" / "inferenceservices.poolgate.dev.yaml").read_text())
    return doc


def test_crd_names_match_the_operator() -> None:
    doc = crd()
    assert doc["metadata"]["name"] == f"{PLURAL}.{GROUP}"
    assert doc["spec"]["group"] == GROUP
    assert doc["spec"]["names"]["kind"] == KIND
    assert [v["name"] for v in doc["spec"]["versions"]] == [VERSION]
    assert doc["spec"]["versions"][0]["subresources"] == {"status": {}}


def test_crd_schema_declares_exactly_the_spec_fields() -> None:
    schema = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    aliases = {f.alias for f in InferenceServiceSpec.model_fields.values()}
    assert set(schema["properties"]) == aliases
    assert schema["required"] == ["modelRef"]


def test_crd_endpoint_pattern_agrees_with_the_parser() -> None:
    props = crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    pattern = re.compile(props["kvEndpoints"]["items"]["pattern"])
    for good in ("redis-0.kv:6379", "10.0.0.1:6379", "[::1]:6379"):
        assert pattern.match(good), good
    for bad in ("redis", "redis://r:6379", "a b:1"):
        assert not pattern.match(bad), bad


def test_example_inference_service_renders() -> None:
    obj = yaml.safe_load((DEPLOY / "examples" / "inferenceservice.yaml").read_text())
    obj["metadata"]["uid"] = "uid-1"
    deployment, service = render(obj)
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "llama-router"

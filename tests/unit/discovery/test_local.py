from __future__ import annotations

import pytest

from poolgate.api.local import LocalEndpoints
from poolgate.discovery.local import LocalEndpointSource, selector_matches
from poolgate.discovery.source import EndpointSource


def declaration(name: str, labels: dict[str, str], addresses: list[object],
                namespace: str = "default", **extra: str) -> LocalEndpoints:
    return LocalEndpoints.model_validate({
        "apiVersion": "poolgate.dev/v1alpha1", "kind": "LocalEndpoints",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"labels": labels, "addresses": addresses, **extra},
    })


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        pytest.param({"app": "a"}, {"app": "a", "tier": "gpu"}, True, id="subset"),
        pytest.param({"app": "a", "tier": "gpu"}, {"app": "a"}, False, id="missing-label"),
        pytest.param({"app": "a"}, {"app": "b"}, False, id="different-value"),
        pytest.param({}, {"app": "a"}, True, id="empty-selector"),
    ],
)
def test_selector_matches(selector: dict[str, str], labels: dict[str, str], expected: bool) -> None:
    assert selector_matches(selector, labels) is expected


def test_endpoints_for_matches_labels_and_defaults_ports() -> None:
    source: EndpointSource = LocalEndpointSource([
        declaration("west", {"app": "m"}, ["10.0.0.1", "10.0.0.2:9000"], cluster="west",
                    region="europe-west3"),
        declaration("east", {"app": "m"},
                    [{"address": "10.1.0.1", "region": "us-east4", "labels": {"gpu": "h100"}}],
                    cluster="east"),
        declaration("other", {"app": "x"}, ["10.9.9.9"]),
        declaration("elsewhere", {"app": "m"}, ["10.8.8.8"], namespace="team"),
        declaration("again", {"app": "m"}, ["10.0.0.1:8000"]),
    ])
    eps = source.endpoints_for("default", {"app": "m"}, 8000)
    assert [e.address for e in eps] == ["10.0.0.1:8000", "10.0.0.2:9000", "10.1.0.1:8000"]
    assert [(e.cluster, e.region) for e in eps] == [
        ("west", "europe-west3"), ("west", "europe-west3"), ("east", "us-east4")]
    assert eps[2].labels == {"app": "m", "gpu": "h100"}
    assert [e.address for e in source.endpoints_for("default", {"gpu": "h100"}, 1)] == ["10.1.0.1:1"]
    assert source.endpoints_for("team", {"app": "m"}, 80)[0].address == "10.8.8.8:80"
    assert source.endpoints_for("default", {"app": "none"}, 80) == ()


def test_ipv6_addresses_keep_brackets_in_the_key() -> None:
    source = LocalEndpointSource([declaration("v6", {"app": "m"}, ["[::1]:8000", "[fe80::2]"])])
    assert [e.address for e in source.endpoints_for("default", {"app": "m"}, 7000)] == [
        "[::1]:8000", "[fe80::2]:7000"]


def test_service_addresses_use_the_service_label() -> None:
    source = LocalEndpointSource([
        declaration("svc", {"poolgate.dev/service": "echo"}, ["127.0.0.1:7000"]),
        declaration("svc2", {"poolgate.dev/service": "echo"}, ["127.0.0.1:7001"], namespace="x"),
    ])
    (a,) = source.service_addresses("default", "echo")
    assert (a.host, a.port) == ("127.0.0.1", 7000)
    assert source.service_addresses("default", "nope") == ()

"""The bootstrap rendered for the seeds' manifests, unmodified (examples/)."""

from __future__ import annotations

import pytest
import yaml

from poolgate.envoy.model import EnvoyOptions
from tests.unit.envoyconf.render import EXAMPLES, cluster, hcm, http_filter, rendered_dir, routes

SEED_000 = EXAMPLES / "seed-000-circuit-breaker"
SEED_002 = EXAMPLES / "seed-002-multi-cluster"
POOL_000 = "httproute/default/test-httproute/rule/0/backend/0"
POOL_002 = "httproute/default/vllm-llama3-8b-instruct-default/rule/0/backend/0"


def test_seed_000_listener_route_and_admin() -> None:
    out = rendered_dir(SEED_000, EnvoyOptions(admin_port=19000, listen_host="127.0.0.1",
                                              port_map={80: 8080}))
    config = out.config
    assert config["admin"]["address"]["socket_address"] == {"address": "127.0.0.1",
                                                            "port_value": 19000}
    [listener] = config["static_resources"]["listeners"]
    assert listener["address"]["socket_address"] == {"address": "127.0.0.1", "port_value": 8080}
    manager = hcm(out)
    assert manager["use_remote_address"] is True
    assert manager["strip_any_host_port"] is True
    assert manager["access_log"][0]["name"] == "envoy.access_loggers.stdout"
    [vhost] = manager["route_config"]["virtual_hosts"]
    assert vhost["domains"] == ["example.com"]
    [route] = vhost["routes"]
    assert route["match"] == {"prefix": "/"}
    # No timeout unless the manifests set one (Envoy's implicit 15 s would cut generations).
    assert route["route"] == {"cluster": POOL_000, "timeout": "0s"}
    ext_proc = route["typed_per_filter_config"]["envoy.filters.http.ext_proc"]
    assert ext_proc["overrides"] == {
        # The seed's v1alpha2 extensionRef names no failureMode: FailClose.
        "failure_mode_allow": False,
        "grpc_initial_metadata": [{"key": "x-poolgate-backend-ref", "value": POOL_000}],
    }


def test_seed_000_circuit_breaker_and_pool_cluster() -> None:
    out = rendered_dir(SEED_000)
    pool = cluster(out, POOL_000)
    assert pool["circuit_breakers"] == {"thresholds": [{
        "priority": "DEFAULT", "max_connections": 1024, "max_pending_requests": 1,
        "max_requests": 1, "max_retries": 1024,
    }]}
    assert pool["type"] == "STATIC"
    [locality] = pool["load_assignment"]["endpoints"]
    assert [e["endpoint"]["address"]["socket_address"] for e in locality["lb_endpoints"]] == [
        {"address": "127.0.0.1", "port_value": 8000}]
    [policy] = pool["load_balancing_policy"]["policies"]
    override = policy["typed_extension_config"]["typed_config"]
    assert override["override_host_sources"] == [
        {"metadata": {"key": "envoy.lb", "path": [{"key": "x-gateway-destination-endpoint"}]}}]
    assert override["selected_host_key"] == {
        "key": "envoy.lb", "path": [{"key": "x-gateway-destination-endpoint-served"}]}
    fallback = override["fallback_policy"]["policies"][0]["typed_extension_config"]
    assert fallback["name"] == "envoy.load_balancing_policies.least_request"


def test_seed_000_ext_proc_filter_and_epp_cluster() -> None:
    out = rendered_dir(SEED_000, EnvoyOptions(epp_host="10.0.0.9", epp_port=9102))
    names = [f["name"] for f in hcm(out)["http_filters"]]
    assert names == ["envoy.filters.http.ext_proc", "envoy.filters.http.router"]
    ext_proc = http_filter(out, "envoy.filters.http.ext_proc")
    assert ext_proc["disabled"] is True  # on only where a route sends to a pool
    config = ext_proc["typed_config"]
    assert config["processing_mode"] == {
        "request_header_mode": "SEND", "request_body_mode": "FULL_DUPLEX_STREAMED",
        "request_trailer_mode": "SEND", "response_header_mode": "SEND",
        "response_body_mode": "FULL_DUPLEX_STREAMED", "response_trailer_mode": "SEND",
    }
    assert config["metadata_options"] == {
        "forwarding_namespaces": {"untyped": ["envoy.lb", "envoy.lb.subset_hint"]},
        "receiving_namespaces": {"untyped": ["envoy.lb"]},
    }
    assert config["response_attributes"] == ["upstream.address"]
    assert config["grpc_service"]["envoy_grpc"]["cluster_name"] == "poolgate-epp"
    epp = cluster(out, "poolgate-epp")
    assert epp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"] == {
        "socket_address": {"address": "10.0.0.9", "port_value": 9102}}
    assert "http2_protocol_options" in epp["typed_extension_protocol_options"][
        "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]["explicit_http_config"]
    assert epp["health_checks"][0]["grpc_health_check"] == {
        "service_name": "envoy.service.ext_proc.v3.ExternalProcessor"}
    assert epp["common_lb_config"] == {"healthy_panic_threshold": {"value": 0}}
    router = http_filter(out, "envoy.filters.http.router")
    assert router["typed_config"]["suppress_envoy_headers"] is True


def test_seed_000_untranslated_is_listed_on_top() -> None:
    out = rendered_dir(SEED_000)
    assert [str(e) for e in out.untranslated] == [
        "InferenceModel default/inferencemodel-sample: model name, criticality and "
        "target-model split on pool default/vllm-llama2-7b-pool are applied by `poolgate epp` "
        "(the endpoint picker), not by Envoy",
    ]
    text = out.yaml()
    head = text.split("\nadmin:")[0]
    assert "# Not translated:\n#   - InferenceModel default/inferencemodel-sample" in head
    assert yaml.safe_load(text) == out.config


def test_seed_002_import_health_check_and_untranslated() -> None:
    out = rendered_dir(SEED_002, EnvoyOptions(port=8080))
    assert out.config["static_resources"]["listeners"][0]["address"]["socket_address"][
        "port_value"] == 8080
    [vhost] = hcm(out)["route_config"]["virtual_hosts"]
    assert vhost["domains"] == ["*"]
    [route] = routes(out)
    assert route["route"]["cluster"] == POOL_002
    pool = cluster(out, POOL_002)
    localities = pool["load_assignment"]["endpoints"]
    assert [loc["locality"] for loc in localities] == [
        {"region": "europe-west3", "zone": "gke-west"}, {"region": "us-east4", "zone": "gke-east"}]
    ports = [[e["endpoint"]["address"]["socket_address"]["port_value"] for e in loc["lb_endpoints"]]
             for loc in localities]
    assert ports == [[18001, 18002], [18101, 18102]]
    # The HealthCheckPolicy's port is the pool's target port: each endpoint is probed on its own.
    assert all("health_check_config" not in e["endpoint"]
               for loc in localities for e in loc["lb_endpoints"])
    [check] = pool["health_checks"]
    assert check["http_health_check"]["path"] == "/health"
    subjects = [e.subject for e in out.untranslated]
    assert "GCPBackendPolicy default/my-backend-policy" in subjects
    assert "InferencePool import default/vllm-llama3-8b-instruct" in subjects
    # The loader's warnings (what poolgate ignores too) are listed.
    assert any("manifest warning" in e.why and "llama3-8b-instruct not found" in e.why
               for e in out.untranslated)


@pytest.mark.parametrize("mode", ["STREAMED", "NONE"])
def test_response_body_mode(mode: str) -> None:
    out = rendered_dir(SEED_000, EnvoyOptions(response_body_mode=mode))
    config = http_filter(out, "envoy.filters.http.ext_proc")["typed_config"]
    assert config["processing_mode"]["response_body_mode"] == mode
    assert config["processing_mode"]["response_trailer_mode"] == "SKIP"
    # The picker may skip a body it does not need (a response that is not streamed).
    assert config["allow_mode_override"] is True
    assert config["processing_mode"]["request_body_mode"] == "FULL_DUPLEX_STREAMED"


def test_unknown_response_body_mode() -> None:
    with pytest.raises(ValueError, match="FULL_DUPLEX_STREAMED, STREAMED, NONE"):
        EnvoyOptions(response_body_mode="BUFFERED")

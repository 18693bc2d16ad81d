from __future__ import annotations

import pytest

from poolgate.api import local
from poolgate.api.kinds import kind_hint, schema_for


@pytest.mark.parametrize(
    ("api_version", "kind", "hint"),
    [
        pytest.param("inference.networking.x-k8s.io/v1alpha2", "InferencePol",
                     "unknown kind 'InferencePol' in inference.networking.x-k8s.io (did you mean "
                     "InferencePool?); it is ignored", id="truncated"),
        pytest.param("gateway.networking.k8s.io/v1", "HTTPRoutes",
                     "unknown kind 'HTTPRoutes' in gateway.networking.k8s.io (did you mean "
                     "HTTPRoute?); it is ignored", id="plural"),
        pytest.param("gateway.networking.k8s.io/v1", "httproute",
                     "unknown kind 'httproute' in gateway.networking.k8s.io (did you mean "
                     "HTTPRoute?); it is ignored", id="case"),
        pytest.param("gateway.envoyproxy.io/v1alpha1", "BackendTraficPolicy",
                     "unknown kind 'BackendTraficPolicy' in gateway.envoyproxy.io (did you mean "
                     "BackendTrafficPolicy?); it is ignored", id="letter-missing"),
        pytest.param("networking.gke.io/v1", "HealthcheckPolicy",
                     "unknown kind 'HealthcheckPolicy' in networking.gke.io (did you mean "
                     "HealthCheckPolicy?); it is ignored", id="gke"),
        pytest.param("gateway.networking.k8s.io/v1", "BackendTrafficPolicy",
                     "BackendTrafficPolicy is not a kind of gateway.networking.k8s.io (did you "
                     "mean apiVersion gateway.envoyproxy.io/v1alpha1?); it is ignored",
                     id="kind-of-another-group"),
    ],
)
def test_a_kind_close_to_a_known_one_gets_a_hint(api_version: str, kind: str, hint: str) -> None:
    assert schema_for(api_version, kind) is None
    assert kind_hint(api_version, kind) == hint


@pytest.mark.parametrize(
    ("api_version", "kind"),
    [
        # Real kinds of the same groups, close to ones poolgate reads.
        pytest.param("gateway.networking.k8s.io/v1alpha2", "TCPRoute", id="tcproute"),
        pytest.param("inference.networking.x-k8s.io/v1alpha1", "InferencePoolImport",
                     id="pool-import"),
        pytest.param("networking.gke.io/v1", "GCPGatewayPolicy", id="gke-gateway-policy"),
        pytest.param("networking.gke.io/v1", "FrontendConfig", id="gke-other"),
        # Other groups are not poolgate's to judge, whatever their kinds are called.
        pytest.param("apps/v1", "Deployment", id="apps"),
        pytest.param("alb.networking.azure.io/v1", "HealthCheckPolicy", id="foreign-group"),
        pytest.param("gateway.networking.x-k8s.io/v1alpha1", "XBackendTrafficPolicy",
                     id="experimental-group"),
    ],
)
def test_real_kinds_and_foreign_groups_get_no_hint(api_version: str, kind: str) -> None:
    assert kind_hint(api_version, kind) is None


def test_an_unknown_kind_in_our_group_is_an_error_with_the_kind_meant() -> None:
    assert schema_for("poolgate.dev/v1alpha1", "LocalEndpoint") == (
        "unknown kind 'LocalEndpoint' in poolgate.dev (did you mean LocalEndpoints?)")
    assert schema_for("poolgate.dev/v1alpha1", "Pool") == (
        "unknown kind 'Pool' in poolgate.dev (known: LocalEndpoints)")
    assert schema_for("poolgate.dev/v1alpha1", "LocalEndpoints") is local.LocalEndpoints


def test_the_operators_inference_service_is_skipped_by_the_gateway() -> None:
    assert schema_for("poolgate.dev/v1alpha1", "InferenceService") is None
    assert kind_hint("poolgate.dev/v1alpha1", "InferenceService") is None

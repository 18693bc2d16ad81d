from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from poolgate.api.fields import closest, field_path
from poolgate.api.loader import load_manifests
from poolgate.api.problems import Problem

BTP = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {name: p}\n"
CTP = "apiVersion: gateway.envoyproxy.io/v1alpha1\nkind: ClientTrafficPolicy\nmetadata: {name: p}\n"
GCP = "apiVersion: networking.gke.io/v1\nkind: GCPBackendPolicy\nmetadata: {name: p}\n"
HCP = "apiVersion: networking.gke.io/v1\nkind: HealthCheckPolicy\nmetadata: {name: p}\n"
ROUTE = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n"
POOL = "apiVersion: inference.networking.k8s.io/v1\nkind: InferencePool\nmetadata: {name: p}\n"
LOCAL = "apiVersion: poolgate.dev/v1alpha1\nkind: LocalEndpoints\nmetadata: {name: l}\n"
TARGET = "  targetRef: {group: networking.gke.io, kind: GCPInferencePoolImport, name: p}\n"


def warnings(tmp_path: Path, doc: str) -> list[Problem]:
    path = tmp_path / "m.yaml"
    path.write_text(textwrap.dedent(doc))
    out = load_manifests([path])
    assert [p for p in out.problems if p.severity == "error"] == []
    assert len(out.resources) == 1  # a field poolgate ignores does not refuse the resource
    return out.problems


@pytest.mark.parametrize(
    ("doc", "line", "message"),
    [
        pytest.param(BTP + "spec:\n  circuitBreaker: {maxParallelRequest: 1}\n", 5,
                     "spec.circuitBreaker.maxParallelRequest is not a field poolgate supports; "
                     "it is ignored (did you mean maxParallelRequests?)", id="btp-nested"),
        pytest.param(BTP + "spec:\n  retry:\n    perRetry:\n      backoff: {baseInterval: 1s}\n", 7,
                     "spec.retry.perRetry.backoff is not a field poolgate supports; it is ignored "
                     "(did you mean backOff?)", id="btp-case"),
        pytest.param(BTP + "spec:\n  rateLimit:\n    type: Local\n    local:\n      rules:\n"
                     "      - limit: {requests: 1, unit: Second}\n"
                     "      - limit: {requests: 2, unit: Second, unti: Minute}\n", 10,
                     "spec.rateLimit.local.rules[1].limit.unti is not a field poolgate supports; "
                     "it is ignored (did you mean unit?)", id="btp-list-item"),
        pytest.param(CTP + "spec:\n  headers: {enableEnvoyHeader: true}\n", 5,
                     "spec.headers.enableEnvoyHeader is not a field poolgate supports; it is "
                     "ignored (did you mean enableEnvoyHeaders?)", id="ctp"),
        pytest.param(GCP + "spec:\n" + TARGET + "  default:\n    timeoutSecs: 10\n", 7,
                     "spec.default.timeoutSecs is not a field poolgate supports; it is ignored "
                     "(did you mean timeoutSec?)", id="gcp-backend-policy"),
        pytest.param(GCP + "spec:\n" + TARGET + "  default:\n    balancingMode: CUSTOM_METRICS\n"
                     "    customMetrics:\n    - {name: gke.named_metrics.kv-cache, "
                     "maxUtilizationPercent: 60, dryrun: true}\n", 9,
                     "spec.default.customMetrics[0].dryrun is not a field poolgate supports; it "
                     "is ignored (did you mean dryRun?)", id="gcp-list-item"),
        pytest.param(HCP + "spec:\n" + TARGET + "  default:\n    config:\n      type: HTTP\n"
                     "      httpHealthCheck: {requestPth: /health}\n", 9,
                     "spec.default.config.httpHealthCheck.requestPth is not a field poolgate "
                     "supports; it is ignored (did you mean requestPath?)", id="health-check-policy"),
        pytest.param(ROUTE + "spec:\n  rules:\n  - backendRefs:\n    - name: a\n    - name: b\n"
                     "      wieght: 3\n", 9,
                     "spec.rules[0].backendRefs[1].wieght is not a field poolgate supports; it "
                     "is ignored (did you mean weight?)", id="route-list-item"),
        pytest.param(POOL + "spec:\n  targetPorts: [{number: 8000}]\n  selector:\n"
                     "    matchLabel: {app: a}\n    matchLabels: {app: a}\n", 7,
                     "spec.selector.matchLabel is not a field poolgate supports; it is ignored "
                     "(did you mean matchLabels?)", id="inference-pool"),
        pytest.param(LOCAL + "spec:\n  labels: {app: a}\n  addresses:\n  - 127.0.0.1:8000\n"
                     "  - {address: 127.0.0.1:8001, regoin: eu}\n", 8,
                     "spec.addresses[1].regoin is not a field poolgate supports; it is ignored "
                     "(did you mean region?)", id="local-endpoints"),
        pytest.param("apiVersion: poolgate.dev/v1alpha1\nkind: LocalEndpoints\nmetadata:\n"
                     "  name: l\n  namepsace: team\nspec: {labels: {app: a}, addresses: [h:1]}\n",
                     5, "metadata.namepsace is not a field poolgate supports; it is ignored (did "
                     "you mean namespace?)", id="metadata"),
    ],
)
def test_a_misspelt_field_is_a_warning_suggesting_the_field_meant(
    tmp_path: Path, doc: str, line: int, message: str
) -> None:
    (p,) = warnings(tmp_path, doc)
    assert (p.severity, p.line, p.message) == ("warning", line, message)


def test_a_field_with_no_close_name_has_no_suggestion(tmp_path: Path) -> None:
    (p,) = warnings(tmp_path, BTP + "spec:\n  healthCheck: {passive: {ejectAfter: 2}}\n")
    assert p.message == ("spec.healthCheck.passive.ejectAfter is not a field poolgate supports; "
                         "it is ignored")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        pytest.param(BTP + "spec:\n  loadBalancer: {type: RoundRobin}\n",
                     "spec.loadBalancer is a field of BackendTrafficPolicy that poolgate does not "
                     "act on; it is ignored", id="btp"),
        pytest.param(BTP + "spec:\n  timeout: {http: {streamIdleTimeout: 5m}}\n",
                     "spec.timeout.http.streamIdleTimeout is a field of BackendTrafficPolicy that "
                     "poolgate does not act on; it is ignored", id="btp-nested"),
        pytest.param(BTP + "spec:\n  timeout: {http: {maxConnectionDuration: 1h}}\n",
                     "spec.timeout.http.maxConnectionDuration is a field of BackendTrafficPolicy "
                     "that poolgate does not act on; it is ignored", id="btp-not-enforced"),
        pytest.param(HCP + "spec:\n" + TARGET + "  default:\n    config:\n"
                     "      httpHealthCheck: {requestPath: /health, host: model.local}\n",
                     "spec.default.config.httpHealthCheck.host is a field of HealthCheckPolicy "
                     "that poolgate does not act on; it is ignored", id="health-check-host"),
        pytest.param(CTP + "spec:\n  timeout: {http: {requestReceivedTimeout: 5s}}\n",
                     "spec.timeout is a field of ClientTrafficPolicy that poolgate does not act on; "
                     "it is ignored", id="ctp"),
        pytest.param(GCP + "spec:\n" + TARGET + "  default: {sessionAffinity: {type: CLIENT_IP}}\n",
                     "spec.default.sessionAffinity is a field of GCPBackendPolicy that poolgate "
                     "does not act on; it is ignored", id="gcp-backend-policy"),
        pytest.param(ROUTE + "spec:\n  rules:\n  - retry: {attempts: 3}\n",
                     "spec.rules[0].retry is a field of HTTPRoute that poolgate does not act on; "
                     "it is ignored", id="route-retry"),
    ],
)
def test_an_upstream_field_poolgate_does_not_act_on_is_named_as_such(
    tmp_path: Path, doc: str, message: str
) -> None:
    (p,) = warnings(tmp_path, doc)
    assert (p.severity, p.message) == ("warning", message)


def test_upstream_fields_with_no_bearing_on_poolgate_are_accepted_silently(tmp_path: Path) -> None:
    assert warnings(tmp_path, """
        apiVersion: gateway.networking.k8s.io/v1
        kind: Gateway
        metadata:
          name: gw
          uid: 0b9c
          resourceVersion: "42"
          managedFields: []
        spec:
          gatewayClassName: c
          addresses: [{type: IPAddress, value: 10.0.0.1}]
          listeners: [{name: http, port: 80, protocol: HTTP}]
        status:
          conditions: []
    """) == []


def test_each_ignored_field_is_reported_once_in_document_order(tmp_path: Path) -> None:
    problems = warnings(tmp_path, BTP + "spec:\n  circuitBreaker: {maxParallelRequest: 1}\n"
                        "  loadBalancer: {type: RoundRobin}\n  retyr: {}\n")
    assert [(p.line, p.message.split(" ")[0]) for p in problems] == [
        (5, "spec.circuitBreaker.maxParallelRequest"), (6, "spec.loadBalancer"), (7, "spec.retyr"),
    ]
    assert "(did you mean retry?)" in problems[2].message


@pytest.mark.parametrize(
    ("name", "known", "expected"),
    [
        pytest.param("maxParallelRequest", ["maxParallelRequests", "maxPendingRequests"],
                     "maxParallelRequests", id="plural"),
        pytest.param("MAXCONNECTIONS", ["maxConnections"], "maxConnections", id="case"),
        pytest.param("ejectAfter", ["baseEjectionTime", "interval"], None, id="nothing-close"),
    ],
)
def test_closest(name: str, known: list[str], expected: str | None) -> None:
    assert closest(name, known, 0.7) == expected


def test_field_path() -> None:
    assert field_path(("spec", "rules", 0, "backendRefs", 1, "weight")) == \
        "spec.rules[0].backendRefs[1].weight"

"""deploy/charts/poolgate: helm lint and template with default values, with every option on, with
watched namespaces and with the endpoint picker alone; every object checked against the
Kubernetes 1.34 schemas (strict) or, for CRD kinds, by poolgate's loader and the Gateway API /
Prometheus Operator fields; the gateway's and the picker's RBAC computed from
poolgate.kube.resources; the picker's command line run through `poolgate epp` itself; the values
schema rejecting bad values; kubectl's offline round trips; the install notes. helm and kubectl
come from `make kube-tools`."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from poolgate.api.loader import load_manifests
from poolgate.proxy.epp import LIVENESS, READINESS
from poolgate.router.config import load_config
from poolgate.state.kv_endpoints import parse_kv_endpoints
from tests.deploy._chart import (
    CHART,
    CONFIGS,
    NAMESPACE,
    RELEASE,
    REPO,
    Obj,
    accepts,
    args_of,
    epp_options,
    grants,
    load_file,
    of_kind,
    one,
    render,
    render_config,
    run,
    template_args,
    value_args,
)
from tests.deploy._discovery import NAMESPACED, fake_discovery
from tests.deploy._rbac import (
    LEASE_VERBS,
    READ,
    RELEASE_NAMESPACE_GRANTS,
    bound_to,
    expected_gateway_grants,
    expected_read_grants,
)

pytestmark = pytest.mark.e2e  # runs helm and kubectl, and kubectl against a server on 127.0.0.1

PLAIN_OPERATOR = REPO / "deploy" / "operator" / "operator.yaml"
# Kinds kubernetes-validate has no schema for (CRDs), each checked by a test of its own below.
CRD_KINDS = {"GatewayClass", "ServiceMonitor"}
FULLNAME = f"{RELEASE}-poolgate"  # the object name prefix for release `pg`
EPP = f"{FULLNAME}-epp"  # the picker's Deployment, Service, ServiceAccount
# The configurations that run the gateway, and those that run the endpoint picker.
GATEWAY_CONFIGS = [c for c in CONFIGS if c != "epp-only"]
EPP_CONFIGS = ["all-options", "watch-namespaces", "epp-only"]


def gateway_deployment(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", f"{FULLNAME}-gateway")


def epp_deployment(objs: list[Obj]) -> Obj:
    return one(objs, "Deployment", EPP)


def container(deployment: Obj) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


# --- helm lint and template -------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS)
def test_helm_lint_passes_strictly(config: str) -> None:
    result = run("helm", "lint", "--strict", str(CHART), *value_args(CONFIGS[config]),
                 "--kube-version", "1.34.0")
    assert "1 chart(s) linted, 0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("config", CONFIGS)
def test_every_object_validates_against_kubernetes_1_34(config: str) -> None:
    """Strict schemas: an unknown or misspelt field is an error, as are wrong types."""
    objs = render_config(config)
    checked = 0
    for obj in objs:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            version = kubernetes_validate.validate(obj, "1.34", strict=True)
        except kubernetes_validate.ValidationError as e:
            path = ".".join(str(p) for p in e.path)
            pytest.fail(f"{obj['kind']}/{obj['metadata']['name']}: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            pytest.fail(f"{e.message}: add a check for this kind to tests/deploy")
        assert version == "1.34"
        checked += 1
    assert checked == len(objs) - sum(o["kind"] in CRD_KINDS for o in objs) > 0


def test_strict_validation_catches_an_unknown_field() -> None:
    """The validator the test above relies on does reject fields Kubernetes does not know."""
    deployment = gateway_deployment(render_config("default"))
    container(deployment)["readOnlyRootFilesytem"] = True
    with pytest.raises(kubernetes_validate.ValidationError, match="readOnlyRootFilesytem"):
        kubernetes_validate.validate(deployment, "1.34", strict=True)


def test_default_values_render_the_gateway_alone() -> None:
    kinds = sorted(o["kind"] for o in render_config("default"))
    assert kinds == sorted([
        "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
        "RoleBinding", "Deployment", "Service", "Service", "PodDisruptionBudget", "GatewayClass"])


def test_every_option_on_renders_every_component() -> None:
    objs = render_config("all-options")
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    fullname = FULLNAME
    for component in ("gateway", "epp", "operator", "router", "redis"):
        assert ("Deployment", f"{fullname}-{component}") in names
    assert {("HorizontalPodAutoscaler", f"{fullname}-gateway"),
            ("Service", EPP), ("PodDisruptionBudget", EPP), ("ServiceAccount", "poolgate-epp-sa"),
            ("ServiceMonitor", f"{fullname}-gateway"),
            ("ConfigMap", f"{fullname}-gateway-manifests"),
            ("Service", f"{fullname}-router"), ("Service", f"{fullname}-redis")} <= names
    assert "replicas" not in gateway_deployment(objs)["spec"]  # the HPA owns it
    assert len(of_kind(objs, "GatewayClass")) == 3


# --- objects of CRD kinds -----------------------------------------------------------------------

# Gateway API v1 GatewayClass (standard channel): the spec fields and the controllerName format.
GATEWAY_CLASS_SPEC = {"controllerName", "description", "parametersRef"}
CONTROLLER_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
                             r"/[A-Za-z0-9/\-._~%!$&'()*+,;=:]+$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.mark.parametrize("config", GATEWAY_CONFIGS)
def test_gateway_classes_load_with_poolgates_loader(config: str, tmp_path: Path) -> None:
    objs = render_config(config)
    served = args_of(container(gateway_deployment(objs)))["--controller-name"]
    classes = of_kind(objs, "GatewayClass")
    assert classes
    for gc in classes:
        assert gc["apiVersion"] == "gateway.networking.k8s.io/v1"
        assert "namespace" not in gc["metadata"]  # cluster-scoped
        assert DNS_SUBDOMAIN.match(gc["metadata"]["name"]) and len(gc["metadata"]["name"]) <= 253
        assert set(gc["spec"]) <= GATEWAY_CLASS_SPEC
        controller = gc["spec"]["controllerName"]
        assert CONTROLLER_NAME.match(controller) and len(controller) <= 253
        assert len(gc["spec"].get("description", "")) <= 64
        assert set(gc["spec"].get("parametersRef", {})) <= {"group", "kind", "name", "namespace"}
        assert controller in served, "the gateway would not serve its own GatewayClass"
        file = tmp_path / f"{gc['metadata']['name']}.yaml"
        file.write_text(yaml.safe_dump(gc))
        loaded = load_manifests([file])
        assert [str(p) for p in loaded.problems] == []
        assert [r.resource.KIND for r in loaded.resources] == ["GatewayClass"]


def test_service_monitor_scrapes_the_admin_service() -> None:
    objs = render_config("all-options")
    sm = one(objs, "ServiceMonitor")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    assert sm["metadata"]["namespace"] == NAMESPACE
    assert sm["metadata"]["labels"]["release"] == "prometheus"  # serviceMonitor.labels
    spec = sm["spec"]
    assert set(spec) == {"selector", "namespaceSelector", "endpoints"}
    assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    [endpoint] = spec["endpoints"]
    assert endpoint == {"port": "admin", "path": "/metrics", "interval": "15s",
                        "scrapeTimeout": "5s"}
    selected = [s for s in of_kind(objs, "Service")
                if spec["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()]
    assert [s["metadata"]["name"] for s in selected] == [f"{FULLNAME}-gateway-admin"]
    assert [p["name"] for p in selected[0]["spec"]["ports"]] == ["admin"]


# --- RBAC: exactly what the controller lists, watches and writes -------------------------------

def _gateway_roles(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("ClusterRole", "Role")
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == "gateway"]


def test_gateway_cluster_role_grants_exactly_the_watched_kinds() -> None:
    objs = render_config("default")
    sa = gateway_deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"]
    subject = {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}
    roles = _gateway_roles(objs)
    assert sorted(r["kind"] for r in roles) == ["ClusterRole", "Role"]
    cluster_role = one(roles, "ClusterRole")
    assert grants(cluster_role["rules"]) == expected_gateway_grants("all")
    role = one(roles, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert grants(role["rules"]) == RELEASE_NAMESPACE_GRANTS
    for r in roles:
        assert bound_to(objs, r) == [subject]


def test_watched_namespaces_get_roles_and_gatewayclasses_a_cluster_role() -> None:
    objs = render_config("watch-namespaces")
    gw = container(gateway_deployment(objs))
    assert args_of(gw)["--namespace"] == ["team-a", "team-b"]
    roles = _gateway_roles(objs)
    cluster_role = one(roles, "ClusterRole")
    assert grants(cluster_role["rules"]) == expected_gateway_grants("cluster")
    by_namespace = {r["metadata"]["namespace"]: grants(r["rules"]) for r in of_kind(roles, "Role")
                    if r["metadata"]["name"].endswith("-watch")}
    assert by_namespace == {ns: expected_gateway_grants("namespaced")
                            for ns in ("team-a", "team-b")}
    release_role = one(roles, "Role", f"{FULLNAME}-gateway")
    assert release_role["metadata"]["namespace"] == NAMESPACE
    assert grants(release_role["rules"]) == RELEASE_NAMESPACE_GRANTS
    for r in roles:
        assert len(bound_to(objs, r)) == 1


def test_operator_rbac_and_leader_election() -> None:
    for config, scope_kind in (("all-options", "ClusterRole"), ("watch-namespaces", "Role")):
        objs = render_config(config)
        operator = container(one(objs, "Deployment", f"{FULLNAME}-operator"))
        flags = args_of(operator)
        assert flags["--leader-elect"] == []
        assert flags["--lease-namespace"] == [NAMESPACE]
        assert any(e["name"] == "POD_NAME" for e in operator["env"])
        # Probes on the port `--health-port` serves.
        (port,) = operator["ports"]
        assert flags["--health-port"] == [str(port["containerPort"])]
        assert operator["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
        assert operator["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
        roles = [o for o in objs if o["kind"] in ("ClusterRole", "Role")
                 and o["metadata"]["labels"]["app.kubernetes.io/component"] == "operator"]
        lease = one(roles, "Role", f"{FULLNAME}-operator-leader-election")
        assert lease["metadata"]["namespace"] == NAMESPACE
        assert grants(lease["rules"]) == {("coordination.k8s.io", "leases"): LEASE_VERBS}
        [main] = [r for r in roles if r is not lease]
        assert main["kind"] == scope_kind
        assert grants(main["rules"]) == grants(
            one(load_file(PLAIN_OPERATOR), "ClusterRole")["rules"])
        if scope_kind == "Role":
            assert main["metadata"]["namespace"] == "team-a"
            assert flags["--namespace"] == ["team-a"]
        else:
            assert "--all-namespaces" in flags
        for r in roles:
            assert len(bound_to(objs, r)) == 1


# --- the gateway Deployment and Services ------------------------------------------------------

def test_gateway_runs_the_controller_with_its_flags() -> None:
    objs = render_config("default")
    deployment = gateway_deployment(objs)
    gw = container(deployment)
    flags = args_of(gw)
    assert gw["args"][0] == "serve"
    service = one(objs, "Service", f"{FULLNAME}-gateway")
    assert flags == {
        "--source": ["kubernetes"],
        "--controller-name": ["poolgate.dev/gateway-controller"],
        "--publish-service": [f"{NAMESPACE}/{service['metadata']['name']}"],
        "--leader-elect": [],
        "--lease-name": [f"{FULLNAME}-gateway"],
        "--port": ["8080"],
        "--admin-host": ["0.0.0.0"],
        "--admin-port": ["9901"],
        "--drain-seconds": ["30"],
        "--log-level": ["info"],
    }
    env = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in gw["env"]}
    assert env == {"POD_NAME": "metadata.name", "POD_NAMESPACE": "metadata.namespace"}
    assert deployment["spec"]["replicas"] == 2
    ports = {p["name"]: p["containerPort"] for p in gw["ports"]}
    assert ports == {"http": 8080, "admin": 9901}
    assert gw["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin"}
    assert gw["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin"}
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]
    assert service["spec"]["ports"][0]["port"] == 80
    admin = one(objs, "Service", f"{FULLNAME}-gateway-admin")
    assert admin["spec"]["type"] == "ClusterIP"
    assert [(p["name"], p["port"]) for p in admin["spec"]["ports"]] == [("admin", 9901)]


@pytest.mark.parametrize("config", CONFIGS)
def test_poolgate_accepts_every_flag_the_chart_passes(config: str) -> None:
    objs = render_config(config)
    names = {f"{FULLNAME}-gateway", EPP, f"{FULLNAME}-operator", f"{FULLNAME}-router"}
    deployments = [d for d in of_kind(objs, "Deployment") if d["metadata"]["name"] in names]
    assert deployments
    for deployment in deployments:
        args = container(deployment)["args"]
        result = accepts(args)
        assert result.returncode == 0, f"poolgate {' '.join(args)}:\n{result.stderr}"
    assert accepts(["serve", "--no-such-flag"]).returncode == 2
    assert accepts(["epp", "--port", "8080"]).returncode == 2  # serve's flag, not the picker's


@pytest.mark.parametrize("config", CONFIGS)
def test_pods_run_as_non_root_with_a_read_only_root(config: str) -> None:
    for deployment in of_kind(render_config(config), "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert "limits" in c["resources"] and "requests" in c["resources"]


@pytest.mark.parametrize("config", CONFIGS)
def test_grace_period_outlasts_the_drain(config: str) -> None:
    """The gateway's and the picker's pods: SIGKILL comes after preStop sleep + --drain-seconds."""
    deployments = [d for d in of_kind(render_config(config), "Deployment")
                   if d["metadata"]["name"] in (f"{FULLNAME}-gateway", EPP)]
    assert deployments
    for deployment in deployments:
        pod = deployment["spec"]["template"]["spec"]
        drain = float(args_of(container(deployment))["--drain-seconds"][0])
        sleep = int(container(deployment)["lifecycle"]["preStop"]["exec"]["command"][1])
        assert pod["terminationGracePeriodSeconds"] > sleep + drain


def test_every_option_reaches_the_gateway_pod() -> None:
    objs = render_config("all-options")
    deployment = gateway_deployment(objs)
    pod = deployment["spec"]["template"]["spec"]
    gw = container(deployment)
    flags = args_of(gw)
    assert flags["--controller-name"] == ["poolgate.dev/gateway-controller",
                                          "gateway.envoyproxy.io/gatewayclass-controller"]
    assert flags["--scheduler-profile"] == ["default"]
    assert flags["--lease-name"] == ["poolgate-status-writer"]
    assert flags["-f"] == ["/etc/poolgate/manifests/endpoints.yaml"]
    assert flags["--region"] == ["europe-west3"]
    configmap = one(objs, "ConfigMap", f"{FULLNAME}-gateway-manifests")
    assert yaml.safe_load(configmap["data"]["endpoints.yaml"])["kind"] == "LocalEndpoints"
    assert {"name": "manifests", "mountPath": "/etc/poolgate/manifests",
            "readOnly": True} in gw["volumeMounts"]
    assert pod["serviceAccountName"] == "poolgate-gateway-sa"
    assert pod["terminationGracePeriodSeconds"] == 90
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["value"] == "gateway"
    assert "podAntiAffinity" in pod["affinity"]
    assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["example.com/owner"] == "inference"
    assert "checksum/extra-manifests" in annotations
    assert deployment["spec"]["template"]["metadata"]["labels"]["tier"] == "edge"
    service = one(objs, "Service", f"{FULLNAME}-gateway")
    assert service["spec"]["type"] == "LoadBalancer"
    assert service["spec"]["ports"][0]["nodePort"] == 30080
    assert one(objs, "PodDisruptionBudget", f"{FULLNAME}-gateway")["spec"]["minAvailable"] == 1
    hpa = one(objs, "HorizontalPodAutoscaler")["spec"]
    assert hpa["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert [m["resource"]["name"] for m in hpa["metrics"]] == ["cpu", "memory"]
    for obj in objs:  # commonLabels, on all but the CRD (crds/ is not templated)
        if obj["kind"] != "CustomResourceDefinition":
            assert obj["metadata"]["labels"]["team"] == "inference"


def test_router_and_redis_options() -> None:
    objs = render_config("all-options")
    router = container(one(objs, "Deployment", f"{FULLNAME}-router"))
    env = {e["name"]: e.get("value") for e in router["env"]}
    redis_service = one(objs, "Service", f"{FULLNAME}-redis")
    assert env["MODEL_REF"] == "llama-3-8b"
    assert env["MAX_CONCURRENCY"] == "8"
    assert env["OVERFLOW"] == "reject"
    assert env["KV_ENDPOINTS"] == f"{redis_service['metadata']['name']}.{NAMESPACE}.svc:6379"
    assert env["GLOBAL_MAX_CONCURRENCY"] == "16"
    assert env["BACKEND_URL"] == "http://poolgate-gateway.poolgate.svc:80"
    assert env["KV_FAILURE_MODE"] == "open"
    assert router["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    redis = container(one(objs, "Deployment", f"{FULLNAME}-redis"))
    assert redis["image"] == "redis:7"
    assert redis["resources"]["limits"] == {"memory": "512Mi"}
    assert [p["port"] for p in redis_service["spec"]["ports"]] == [6379]


def test_gateway_replicas_share_their_in_flight_counts_through_redis() -> None:
    def shared(*sets: str) -> list[str] | None:
        gw = container(gateway_deployment(render(sets=sets)))
        assert accepts(gw["args"]).returncode == 0
        return args_of(gw).get("--shared-load-redis")

    redis = f"{FULLNAME}-redis.{NAMESPACE}.svc:6379"
    # The chart's Redis, whenever more than one gateway replica may run.
    assert shared("redis.enabled=true") == [redis]  # 2 replicas by default
    assert shared("redis.enabled=true", "gateway.replicas=1",
                  "gateway.autoscaling.enabled=true") == [redis]
    assert shared("redis.enabled=true", "gateway.replicas=1") is None
    assert shared() is None  # no Redis, no nodes: local counts
    given = shared("gateway.replicas=1", "gateway.sharedLoad.kvEndpoints={r1:6379,[fd00::1]:6380}")
    assert given == ["r1:6379,[fd00::1]:6380"]
    assert [str(n) for n in parse_kv_endpoints(given[0])] == ["r1:6379", "[fd00::1]:6380"]


def test_router_env_is_accepted_by_the_routers_own_loader() -> None:
    router = container(one(render_config("all-options"), "Deployment", f"{FULLNAME}-router"))
    env = {e["name"]: e["value"] for e in router["env"] if "value" in e}
    load_config(env)


# --- the endpoint picker (epp.enabled) -----------------------------------------------------------

def test_the_picker_is_off_by_default() -> None:
    objs = render_config("default")
    assert [o["metadata"]["name"] for o in objs
            if o["metadata"].get("labels", {}).get("app.kubernetes.io/component") == "epp"] == []


def test_picker_alone_runs_poolgate_epp_with_its_flags() -> None:
    """ci/epp-only: the picker behind Envoy Gateway, without poolgate's gateway."""
    objs = render_config("epp-only")
    assert {o["metadata"]["labels"]["app.kubernetes.io/component"] for o in objs
            if o["kind"] != "CustomResourceDefinition"} == {"epp"}
    assert of_kind(objs, "GatewayClass") == []
    deployment = epp_deployment(objs)
    epp = container(deployment)
    assert epp["args"][0] == "epp"
    assert args_of(epp) == {
        "--source": ["kubernetes"],
        "--controller-name": ["gateway.envoyproxy.io/gatewayclass-controller"],
        "--grpc-port": ["9002"],
        "--host": ["0.0.0.0"],
        "--admin-host": ["0.0.0.0"],
        "--admin-port": ["9901"],
        "--drain-seconds": ["30"],
        "--log-level": ["info"],
    }
    assert deployment["spec"]["replicas"] == 1
    assert of_kind(objs, "PodDisruptionBudget") == []  # one replica: no budget
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == one(objs, "ServiceAccount")["metadata"]["name"] == EPP
    assert pod["terminationGracePeriodSeconds"] == 5 + 30 + 10
    assert {"name": "tmp", "mountPath": "/tmp"} in epp["volumeMounts"]


@pytest.mark.parametrize("config", EPP_CONFIGS)
def test_poolgate_epp_runs_as_the_chart_means(config: str) -> None:
    """The picker's command line through `poolgate epp` itself (its checks included), stopped
    before serving: an ext_proc picker reading the API, writing nothing, on the port the Service
    and the probes name."""
    objs = render_config(config)
    epp = container(epp_deployment(objs))
    flags = args_of(epp)
    options = epp_options(epp["args"])
    assert options["front"] == "ext_proc"
    assert (options["source"], options["discovery"]) == ("kubernetes", "kubernetes")
    assert options["paths"] == []
    assert options["write_status"] is False and options["leader_elect"] is False
    assert options["publish_service"] is None
    assert options["controller_names"] == flags["--controller-name"]
    assert options["namespaces"] == flags.get("--namespace", [])
    assert options["host"] == options["admin_host"] == "0.0.0.0"  # reachable on the pod IP
    ports = {p["name"]: p["containerPort"] for p in epp["ports"]}
    assert ports == {"grpc": options["grpc_port"], "admin": options["admin_port"]}
    assert options["drain_seconds"] == float(flags["--drain-seconds"][0])


@pytest.mark.parametrize("config", EPP_CONFIGS)
def test_picker_service_is_what_an_endpoint_picker_ref_names(config: str) -> None:
    """`endpointPickerRef: {name: <fullname>-epp, port: {number: 9002}}`: a ClusterIP Service of
    that name in the release namespace, its port the picker's --grpc-port, h2c, selecting the
    picker's pods and nothing else."""
    objs = render_config(config)
    deployment = epp_deployment(objs)
    epp = container(deployment)
    grpc_port = int(args_of(epp)["--grpc-port"][0])
    assert grpc_port == 9002  # the Inference Extension's EPP port, as the docs and NOTES say
    service = one(objs, "Service", EPP)
    assert service["metadata"]["namespace"] == NAMESPACE
    assert service["spec"]["type"] == "ClusterIP"
    [port] = service["spec"]["ports"]
    assert port == {"name": "grpc", "port": grpc_port, "targetPort": "grpc", "protocol": "TCP",
                    "appProtocol": "kubernetes.io/h2c"}
    target = [p for p in epp["ports"] if p["name"] == port["targetPort"]]
    assert [p["containerPort"] for p in target] == [grpc_port]
    selector = service["spec"]["selector"].items()
    pods = {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"].items()
            for d in of_kind(objs, "Deployment")}
    assert [name for name, labels in pods.items() if selector <= labels] == [EPP]


@pytest.mark.parametrize("config", EPP_CONFIGS)
def test_picker_probes_name_its_grpc_health_services(config: str) -> None:
    deployment = epp_deployment(render_config(config))
    epp = container(deployment)
    grpc_port = int(args_of(epp)["--grpc-port"][0])
    assert epp["livenessProbe"]["grpc"] == {"port": grpc_port, "service": LIVENESS}
    assert epp["readinessProbe"]["grpc"] == {"port": grpc_port, "service": READINESS}
    assert (LIVENESS, READINESS) == ("liveness", "readiness")
    for probe in (epp["livenessProbe"], epp["readinessProbe"]):
        assert set(probe) - {"grpc"} == {"periodSeconds", "timeoutSeconds", "failureThreshold"}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == args_of(epp)["--admin-port"][0]
    assert annotations["prometheus.io/path"] == "/metrics"


def _epp_roles(objs: list[Obj]) -> list[Obj]:
    return [o for o in objs if o["kind"] in ("ClusterRole", "Role")
            and o["metadata"]["labels"]["app.kubernetes.io/component"] == "epp"]


@pytest.mark.parametrize("config", ["epp-only", "all-options"])
def test_picker_reads_exactly_the_watched_kinds_and_writes_nothing(config: str) -> None:
    objs = render_config(config)
    sa = epp_deployment(objs)["spec"]["template"]["spec"]["serviceAccountName"]
    roles = _epp_roles(objs)
    [cluster_role] = roles  # no Role: no Lease, no Services, nothing in the release namespace
    assert cluster_role["kind"] == "ClusterRole"
    assert grants(cluster_role["rules"]) == expected_read_grants("all")
    assert bound_to(objs, cluster_role) == [
        {"kind": "ServiceAccount", "name": sa, "namespace": NAMESPACE}]


def test_picker_watching_namespaces_reads_them_and_gatewayclasses_only() -> None:
    objs = render_config("watch-namespaces")
    # The release namespace first (the pools naming the picker's Service are there), then the
    # namespaces listed.
    assert args_of(container(epp_deployment(objs)))["--namespace"] == [NAMESPACE, "team-a"]
    roles = _epp_roles(objs)
    cluster_role = one(roles, "ClusterRole")
    assert grants(cluster_role["rules"]) == expected_read_grants("cluster")
    by_namespace = {r["metadata"]["namespace"]: grants(r["rules"])
                    for r in of_kind(roles, "Role")}
    assert by_namespace == {ns: expected_read_grants("namespaced") for ns in (NAMESPACE, "team-a")}
    for r in roles:
        assert all(verbs <= READ for verbs in grants(r["rules"]).values())
        assert len(bound_to(objs, r)) == 1
    # The release namespace listed too: watched once.
    objs = render(CONFIGS["watch-namespaces"], ["epp.watchNamespaces={team-a,poolgate}"])
    assert args_of(container(epp_deployment(objs)))["--namespace"] == [NAMESPACE, "team-a"]


def test_every_option_reaches_the_picker_pod() -> None:
    objs = render_config("all-options")
    deployment = epp_deployment(objs)
    pod = deployment["spec"]["template"]["spec"]
    epp = container(deployment)
    flags = args_of(epp)
    assert flags["--controller-name"] == ["gateway.envoyproxy.io/gatewayclass-controller",
                                          "istio.io/gateway-controller"]
    assert "--namespace" not in flags
    assert flags["--scheduler-profile"] == ["default"]
    assert flags["--log-level"] == ["debug"]
    assert flags["--drain-seconds"] == ["45"]
    assert flags["--saturation-queue"] == ["8"]
    assert flags["--max-body-bytes"] == ["8388608"]
    assert {"name": "PYTHONFAULTHANDLER", "value": "1"} in epp["env"]
    assert epp["resources"] == {"requests": {"cpu": "1", "memory": "512Mi"},
                                "limits": {"memory": "2Gi"}}
    assert epp["livenessProbe"]["periodSeconds"] == 15
    assert epp["readinessProbe"]["failureThreshold"] == 1
    assert epp["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "3"]
    assert deployment["spec"]["replicas"] == 3
    pdb = one(objs, "PodDisruptionBudget", EPP)["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"].items() <= \
        deployment["spec"]["template"]["metadata"]["labels"].items()
    assert pod["serviceAccountName"] == "poolgate-epp-sa"
    sa = one(objs, "ServiceAccount", "poolgate-epp-sa")
    assert sa["metadata"]["annotations"] == {"example.com/owner": "inference"}
    assert pod["terminationGracePeriodSeconds"] == 60
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"][0]["value"] == "picker"
    assert "podAntiAffinity" in pod["affinity"]
    assert pod["topologySpreadConstraints"][0]["maxSkew"] == 1
    assert pod["imagePullSecrets"] == [{"name": "registry-credentials"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert deployment["spec"]["template"]["metadata"]["annotations"]["example.com/owner"] == \
        "inference"
    assert deployment["spec"]["template"]["metadata"]["labels"]["tier"] == "picker"
    assert one(objs, "Service", EPP)["metadata"]["annotations"] == {"example.com/picker": "true"}


def test_picker_budget_only_with_more_than_one_replica() -> None:
    objs = render(sets=["epp.enabled=true", "epp.replicas=2"])
    assert one(objs, "PodDisruptionBudget", EPP)["spec"]["maxUnavailable"] == 1
    objs = render(sets=["epp.enabled=true", "epp.replicas=2",
                        "epp.podDisruptionBudget.enabled=false"])
    assert [p["metadata"]["name"] for p in of_kind(objs, "PodDisruptionBudget")] == [
        f"{FULLNAME}-gateway"]


def test_install_notes_give_the_endpoint_picker_ref() -> None:
    """NOTES.txt (rendered by an offline `helm install --dry-run=client`) says what to put in an
    InferencePool: the Service's name and port, in the release namespace."""
    result = run("helm", "install", RELEASE, str(CHART), "--namespace", NAMESPACE,
                 "--dry-run=client", *value_args(CONFIGS["epp-only"]))
    notes = result.stdout.partition("NOTES:")[2]
    assert f"endpointPickerRef:\n         name: {EPP}\n         port: {{number: 9002}}" in notes
    assert f"extensionRef: {{name: {EPP}, portNumber: 9002}}" in notes
    assert f"metadata: {{name: <pool>, namespace: {NAMESPACE}}}" in notes
    assert "gateway.envoyproxy.io/gatewayclass-controller" in notes


# --- chart metadata ----------------------------------------------------------------------------

def test_app_version_is_poolgates_version_and_the_crd_is_deploys() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["appVersion"] == project["version"]
    image = container(gateway_deployment(render_config("default")))["image"]
    assert image == f"ghcr.io/poolgate/poolgate:{project['version']}"
    crd = (REPO / "deploy" / "crds" / "inferenceservices.poolgate.dev.yaml").read_text()
    assert (CHART / "crds" / "inferenceservices.poolgate.dev.yaml").read_text() == crd


# --- values.schema.json and the render-time checks ---------------------------------------------

BAD_VALUES = [
    pytest.param("gateway.replicas=two", "/gateway/replicas", id="replicas-not-an-integer"),
    pytest.param("gateway.replica=2", "'replica' not allowed", id="misspelt-key"),
    pytest.param("gateway.service.type=Ingress", "/gateway/service/type", id="service-type"),
    pytest.param("gateway.controllerNames[0]=no-slash", "/gateway/controllerNames/0",
                 id="controller-name-format"),
    pytest.param("gateway.logLevel=loud", "/gateway/logLevel", id="log-level"),
    pytest.param("gateway.drainSeconds=-1", "/gateway/drainSeconds", id="negative-drain"),
    pytest.param("router.overflow=drop", "/router/overflow", id="router-overflow"),
    pytest.param("router.kvEndpoints[0]=redis://r:6379", "/router/kvEndpoints/0",
                 id="kv-endpoint-url"),
    pytest.param("gateway.sharedLoad.kvEndpoints[0]=redis://r:6379",
                 "/gateway/sharedLoad/kvEndpoints/0", id="shared-load-url"),
    pytest.param("image.pullPolicy=Sometimes", "/image/pullPolicy", id="pull-policy"),
    pytest.param("epp.enable=true", "'enable' not allowed", id="epp-misspelt-key"),
    pytest.param("epp.controllerNames[0]=istio", "/epp/controllerNames/0",
                 id="epp-controller-name-format"),
    pytest.param("epp.replicas=-1", "/epp/replicas", id="epp-negative-replicas"),
    # the gRPC port is fixed at 9002 (what endpointPickerRef names), not a value
    pytest.param("epp.service.port=9003", "'port' not allowed", id="epp-service-port"),
]


@pytest.mark.parametrize(("setting", "message"), BAD_VALUES)
def test_values_schema_rejects_a_bad_value(setting: str, message: str) -> None:
    lint = run("helm", "lint", str(CHART), "--set", setting, check=False)
    assert lint.returncode != 0
    assert message in lint.stdout + lint.stderr
    template = run("helm", *template_args(sets=[setting]), check=False)
    assert template.returncode != 0
    assert "values don't meet the specifications of the schema" in template.stderr
    assert message in template.stderr


RENDER_ERRORS = [
    pytest.param(["gateway.drainSeconds=60", "gateway.terminationGracePeriodSeconds=60"],
                 "must exceed gateway.preStopSleepSeconds + gateway.drainSeconds", id="grace"),
    pytest.param(["gatewayClasses[0].name=x", "gatewayClasses[0].controllerName=example.com/x"],
                 "is not one of gateway.controllerNames", id="class-not-served"),
    pytest.param(["router.enabled=true"], "router.modelRef is required", id="router-model"),
    pytest.param(["router.enabled=true", "router.modelRef=m", "router.globalMaxConcurrency=4"],
                 "needs router.kvEndpoints or redis.enabled", id="global-limit-without-kv"),
    pytest.param(["operator.enabled=true", "operator.replicas=2", "operator.leaderElect=false"],
                 "needs operator.leaderElect", id="operator-replicas"),
    pytest.param(["gateway.serviceMonitor.enabled=true", "gateway.adminService.enabled=false"],
                 "needs gateway.adminService.enabled", id="monitor-without-admin"),
    pytest.param(["epp.enabled=true", "epp.drainSeconds=60",
                  "epp.terminationGracePeriodSeconds=60"],
                 "epp.terminationGracePeriodSeconds (60) must exceed epp.preStopSleepSeconds + "
                 "epp.drainSeconds (65)", id="epp-grace"),
    pytest.param(["epp.enabled=true", "epp.serviceAccount.create=false"],
                 "epp.serviceAccount.name is required", id="epp-service-account"),
]


@pytest.mark.parametrize(("sets", "message"), RENDER_ERRORS)
def test_inconsistent_values_fail_to_render(sets: list[str], message: str) -> None:
    result = run("helm", *template_args(sets=sets), check=False)
    assert result.returncode != 0
    assert message in result.stderr


# --- kubectl, offline --------------------------------------------------------------------------

@pytest.mark.parametrize("config", CONFIGS)
def test_kubectl_kustomize_reads_every_object_once(config: str, tmp_path: Path) -> None:
    """kustomize (built into kubectl, offline) parses each document as a Kubernetes object
    and refuses two objects with the same kind, namespace and name."""
    objs = render_config(config)
    (tmp_path / "chart.yaml").write_text(yaml.safe_dump_all(objs))
    (tmp_path / "kustomization.yaml").write_text("resources: [chart.yaml]\n")
    out = run("kubectl", "kustomize", str(tmp_path)).stdout
    back = [d for d in yaml.safe_load_all(out) if d]
    key = lambda o: (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"])  # noqa: E731
    assert sorted(map(key, back)) == sorted(map(key, objs))


@pytest.mark.parametrize("config", CONFIGS)
def test_kubectl_apply_dry_run_maps_every_object(config: str, tmp_path: Path) -> None:
    """`kubectl apply --dry-run=client` needs an API server's discovery even without --validate:
    a discovery-only fake on 127.0.0.1 answers it (and 404 for every object). kubectl must map
    every kind, and every namespaced object must land in the namespace the chart set, never in
    kubectl's `default`."""
    objs = render_config(config)
    file = tmp_path / "chart.yaml"
    file.write_text(yaml.safe_dump_all(objs))
    with fake_discovery() as api:
        out = run("kubectl", "--server", api.url, "--cache-dir", str(tmp_path / "cache"),
                  "apply", "--dry-run=client",
                  "--validate=false", "-f", str(file), "-o", "json").stdout
    assert [r for r in api.requests if not r.startswith("GET ")] == []
    items = json.loads(out)["items"]
    assert len(items) == len(objs)
    for sent, applied in zip(objs, items, strict=True):
        assert (applied["kind"], applied["metadata"]["name"]) == (sent["kind"],
                                                                   sent["metadata"]["name"])
        namespaced = NAMESPACED[(sent["apiVersion"], sent["kind"])]
        assert ("namespace" in sent["metadata"]) == namespaced, sent["metadata"]
        if namespaced:
            assert applied["metadata"]["namespace"] == sent["metadata"]["namespace"] != "default"


# --- values.yaml and README document every value -----------------------------------------------

def declared_values() -> list[tuple[str, int]]:
    """Each key of values.yaml that values.schema.json declares (walking inline `properties`,
    not free-form maps nor list items), with its 0-based line in values.yaml."""
    schema = json.loads((CHART / "values.schema.json").read_text())

    def walk(node: yaml.MappingNode, sch: dict[str, Any], prefix: str) -> list[tuple[str, int]]:
        out = []
        for key, value in node.value:
            props = sch.get("properties", {})
            assert key.value in props, f"{prefix}{key.value} is not in values.schema.json"
            out.append((prefix + key.value, key.start_mark.line))
            if "properties" in props[key.value] and isinstance(value, yaml.MappingNode):
                out += walk(value, props[key.value], f"{prefix}{key.value}.")
        return out

    root = yaml.compose((CHART / "values.yaml").read_text())
    assert isinstance(root, yaml.MappingNode)
    return walk(root, schema, "")


def test_every_value_has_a_comment() -> None:
    lines = (CHART / "values.yaml").read_text().splitlines()
    bare = [path for path, line in declared_values() if not lines[line - 1].lstrip().startswith("#")]
    assert bare == []


def test_the_chart_readme_lists_every_value() -> None:
    readme = (CHART / "README.md").read_text()
    rows = [line for line in readme.splitlines() if line.startswith("| `")]
    missing = []
    for path, _ in declared_values():
        parent, _, leaf = path.rpartition(".")
        found = f"`{path}`" in readme or f"`{path}." in readme or any(
            f"`{parent}." in row and f"`{leaf}`" in row for row in rows if parent)
        if not found:
            missing.append(path)
    assert missing == []

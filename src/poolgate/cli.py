"""The `poolgate` command line: commands only, each delegating to its package."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Annotated

import typer

from poolgate import __version__

if TYPE_CHECKING:
    from poolgate.kube.leader import LeaseTiming
    from poolgate.proxy.kube_mode import KubeOptions
    from poolgate.scheduling.config import SchedulerConfig
    from poolgate.state.shared_load import SharedLoadSettings

app = typer.Typer(
    name="poolgate",
    help="An inference gateway for fleets of LLM model servers.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"poolgate {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """An inference gateway for fleets of LLM model servers."""


# Each package registers its own command below (one line each, keep sorted by command name).


@app.command()
def validate(
    files: Annotated[list[Path], typer.Option(
        "-f", "--file", help="A manifest file or directory (repeatable)."
    )],
    strict: Annotated[bool, typer.Option("--strict", help="Treat warnings as errors.")] = False,
    scheduler_config: Annotated[Path | None, typer.Option(
        "--scheduler-config",
        help="Custom scheduler profiles (as for `serve`), so annotations may name them.",
    )] = None,
) -> None:
    """Load and resolve manifests; print problems with file and document position."""
    from poolgate.config.build import PROFILE_NAMES, load_snapshot
    from poolgate.config.validate_report import render_validation

    custom = _load_scheduler_config(scheduler_config)
    text, code = render_validation(
        load_snapshot(files, profiles=PROFILE_NAMES | frozenset(custom)), strict)
    typer.echo(text)
    raise typer.Exit(code)


@app.command("envoy-config")
def envoy_config(
    files: list[Path] = typer.Option(..., "-f", "--file", help="Manifest file or directory (repeatable), as for `serve`."),
    epp_address: str = typer.Option("127.0.0.1:9002", "--epp-address", help="HOST:PORT of `poolgate epp` (the ext_proc gRPC server)."),
    admin_port: int = typer.Option(9901, "--admin-port", min=1, max=65535, help="Envoy's admin interface port (on 127.0.0.1)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address Envoy's listeners bind."),
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Listen on this port instead of the Gateway's (single listener port)."),
    port_map: list[str] = typer.Option([], "--port-map", help="DECLARED=BOUND listener port (repeatable)."),
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the bootstrap here instead of stdout."),
    response_body_mode: str = typer.Option("FULL_DUPLEX_STREAMED", "--response-body-mode", help="How response bodies reach the picker: FULL_DUPLEX_STREAMED (the Inference Extension's), STREAMED or NONE (see docs/envoy-config.md)."),
) -> None:
    """Render an Envoy bootstrap for the manifests, ext_proc pointing at `poolgate epp`."""
    from poolgate.envoy.command import options_of, run

    try:
        options = options_of(epp_address, admin_port, host, port, _parse_port_map(port_map),
                             response_body_mode)
    except ValueError as e:
        hint = "--response-body-mode" if "response body" in str(e) else "--epp-address"
        raise typer.BadParameter(str(e), param_hint=hint) from None
    raise typer.Exit(run(files, options, output))


@app.command(
    "bench",
    add_help_option=False,
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def bench(ctx: typer.Context) -> None:
    """Load-test OpenAI-compatible endpoints and report TTFT, TPOT, ITL, E2E (see --help)."""
    from poolgate.bench.command import main as bench_main

    bench_main(list(ctx.args))


@app.command("operator")
def operator(
    kubeconfig: str | None = typer.Option(None, "--kubeconfig", help="Kubeconfig file (current context); default: the in-cluster service account."),
    namespace: str | None = typer.Option(None, "--namespace", "-n", help="Namespace to watch; default: the service account's (or context's) namespace."),
    all_namespaces: bool = typer.Option(False, "--all-namespaces", "-A", help="Watch InferenceServices in every namespace."),
    resync_seconds: float = typer.Option(300.0, "--resync-seconds", min=1, help="Re-list and re-apply everything this often."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    leader_elect: bool = typer.Option(False, "--leader-elect", help="Reconcile only while holding a coordination.k8s.io Lease (run several replicas)."),
    lease_name: str = typer.Option("poolgate-operator", "--lease-name", help="Name of the Lease."),
    lease_namespace: str | None = typer.Option(None, "--lease-namespace", help="Namespace of the Lease; default: the service account's (or context's)."),
    lease_duration: float = typer.Option(15.0, "--lease-duration", min=1, help="Seconds a Lease not renewed stays with its holder."),
    renew_deadline: float = typer.Option(10.0, "--renew-deadline", min=0.1, help="The leader steps down after failing to renew this long."),
    retry_period: float = typer.Option(2.0, "--retry-period", min=0.05, help="Seconds between reads/renewals of the Lease."),
    health_port: int = typer.Option(0, "--health-port", min=0, max=65535, help="Serve the probes (/healthz, /readyz) on this port (the chart uses 8081); 0: none."),
    health_host: str = typer.Option("0.0.0.0", "--health-host", help="Address the probes listen on."),
) -> None:
    """Run the InferenceService controller: renders and applies each router Deployment and Service."""
    from pathlib import Path

    from poolgate.kube.leader import LeaseTiming
    from poolgate.operator.main import LeaseSettings, run

    if not retry_period < renew_deadline < lease_duration:
        raise typer.BadParameter("needs --retry-period < --renew-deadline < --lease-duration",
                                 param_hint="--renew-deadline")
    if log_level.lower() not in ("debug", "info", "warning", "error"):
        raise typer.BadParameter(f"{log_level!r} is not debug, info, warning or error",
                                 param_hint="--log-level")

    raise typer.Exit(run(Path(kubeconfig) if kubeconfig else None, namespace, all_namespaces,
                         resync_seconds, log_level,
                         LeaseSettings(lease_name, lease_namespace,
                                       LeaseTiming(lease_duration, renew_deadline, retry_period))
                         if leader_elect else None,
                         (health_host, health_port) if health_port else None))


@app.command("router")
def router() -> None:
    """Run the InferenceService router (seed 003), configured from the environment.

    Required: MODEL_REF. Main knobs: MAX_CONCURRENCY (10), KV_ENDPOINTS, OVERFLOW (queue|reject),
    MAX_QUEUE, QUEUE_TIMEOUT_MS, PORT (8080), SIMULATED_LATENCY_MS, BACKEND_URL,
    GLOBAL_MAX_CONCURRENCY, KV_FAILURE_MODE (open|closed), KV_LEASE_MS. See docs/router.md.
    """
    from poolgate.router.main import run

    raise typer.Exit(run())


def _parse_port_map(values: list[str]) -> dict[int, int]:
    mapping: dict[int, int] = {}
    for item in values:
        declared, sep, bound = item.partition("=")
        if not sep or not declared.isdigit() or not bound.isdigit():
            raise typer.BadParameter(f"expected DECLARED=BOUND (e.g. 80=8080), got {item!r}")
        mapping[int(declared)] = int(bound)
    return mapping


@app.command("demo")
def demo(
    port: int = typer.Option(8080, "--port", help="Gateway port."),
    admin_port: int = typer.Option(9901, "--admin-port", help="Admin port (/metrics /status)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address the gateway binds."),
    replicas: int = typer.Option(4, "--replicas", min=1, help="Simulated vLLM replicas."),
    profile: str = typer.Option("a10-llama2-7b", "--profile", help="Simulator hardware profile (see `poolgate sim --help`)."),
    time_scale: float = typer.Option(1.0, "--time-scale", min=0.0001, help="Simulated durations are divided by this."),
    seed: int = typer.Option(0, "--seed", help="Seed for the simulator and the gateway."),
    access_log: str = typer.Option("-", "--access-log", help="'-' for stdout, 'off', or a file path."),
) -> None:
    """Start a simulated vLLM fleet and the gateway in front of it (what `make run` runs)."""
    from poolgate.demo.run import DemoOptions, run_demo
    from poolgate.observability.logs import configure_logging
    from poolgate.sim.profiles import PROFILES

    if profile not in PROFILES:
        raise typer.BadParameter(f"unknown profile {profile!r}; choose one of {', '.join(sorted(PROFILES))}",
                                 param_hint="--profile")
    configure_logging("warning")
    raise typer.Exit(run_demo(DemoOptions(
        port=port, admin_port=admin_port, host=host, replicas=replicas, profile=profile,
        time_scale=time_scale, seed=seed, access_log=access_log,
    )))


@app.command("serve")
def serve(
    files: list[Path] = typer.Option([], "-f", "--file", help="Manifest file or directory (repeatable); with --source kubernetes, local overrides of API objects of the same kind and name."),
    port: int | None = typer.Option(None, "--port", help="Bind the Gateway's HTTP listener on this port instead of the declared one."),
    port_map: list[str] = typer.Option([], "--port-map", help="DECLARED=BOUND for Gateways with several listener ports (repeatable)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address the listeners bind."),
    reuse_port: bool = typer.Option(False, "--reuse-port", help="Bind the listeners with SO_REUSEPORT, so that several poolgate serve processes (each a gateway of its own, as replicas behind a Service; each with its own --admin-port) share their ports and the kernel spreads connections among them (docs/gateway.md, 'One process per gateway')."),
    admin_port: int = typer.Option(9901, "--admin-port", help="Admin listener port (/metrics /healthz /readyz /status)."),
    admin_host: str = typer.Option("127.0.0.1", "--admin-host", help="Admin listener address."),
    access_log: str = typer.Option("-", "--access-log", help="'-' for stdout, 'off', or a file path."),
    max_body_bytes: int = typer.Option(16 << 20, "--max-body-bytes", min=1, help="Largest request body accepted (413 above)."),
    connect_timeout: float = typer.Option(10.0, "--connect-timeout", min=0.001, help="Seconds to open an upstream connection."),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Reload the manifests when they change."),
    drain_seconds: float = typer.Option(30.0, "--drain-seconds", min=0, help="On stop, wait this long for requests in flight."),
    seed: int | None = typer.Option(None, "--seed", help="Seed random choices (weights, tie-breaks) for reproducible runs."),
    scheduler_profile: str = typer.Option("default", "--scheduler-profile", help="Endpoint-picker profile for pools without the poolgate.dev/scheduler-profile annotation (see docs/scheduling.md)."),
    scheduler_config: Path | None = typer.Option(None, "--scheduler-config", help="YAML file of custom scheduler profiles (poolgate plugin lists or GIE EndpointPickerConfig) that pools and --scheduler-profile may name."),
    scrape_interval: float = typer.Option(0.05, "--scrape-interval", min=0.005, help="Seconds between scrapes of each endpoint's /metrics."),
    scrape_idle_interval: float = typer.Option(1.0, "--scrape-idle-interval", min=0.0, help="Seconds between scrapes of an idle pool's endpoints (at most half of --metrics-staleness; 0: as often as busy ones)."),
    scrape_idle_after: float = typer.Option(3.0, "--scrape-idle-after", min=0.0, help="A pool with no request for this many seconds is idle."),
    metrics_staleness: float = typer.Option(2.0, "--metrics-staleness", min=0.01, help="Metrics older than this many seconds count as unknown."),
    saturation_queue: int = typer.Option(5, "--saturation-queue", min=0, help="A pool is saturated when no endpoint has fewer waiting requests than this (and KV use under --saturation-kv)."),
    saturation_kv: float = typer.Option(0.8, "--saturation-kv", min=0.0, max=1.0, help="KV-cache utilisation threshold of the saturation check."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    region: str | None = typer.Option(None, "--region", help="The gateway's own region: multi-cluster balancing fills it first (see docs/multicluster.md)."),
    region_order: str | None = typer.Option(None, "--region-order", help="Regions nearest first, comma-separated (e.g. europe-west3,us-east4)."),
    discovery: str = typer.Option("local", "--discovery", help="Where pool endpoints come from: 'local' (LocalEndpoints) or 'kubernetes' (also the Ready pods each InferencePool selects, watched through the API)."),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="With --source or --discovery kubernetes outside a cluster: the kubeconfig whose current context to use (default: the pod's service account)."),
    source: str = typer.Option("files", "--source", help="Where the manifests come from: 'files' (-f) or 'kubernetes' (listed and watched through the API, status written back; see docs/deploy.md)."),
    namespaces: list[str] = typer.Option([], "--namespace", "-n", help="With --source kubernetes: watch only this namespace (repeatable; default: every namespace)."),
    controller_names: list[str] = typer.Option([], "--controller-name", help="With --source kubernetes: serve the Gateways whose GatewayClass has this spec.controllerName (repeatable; default poolgate.dev/gateway-controller)."),
    publish_service: str | None = typer.Option(None, "--publish-service", help="With --source kubernetes: NAMESPACE/NAME of the Service in front of the gateway; its addresses go into each Gateway's status.addresses."),
    leader_elect: bool = typer.Option(True, "--leader-elect/--no-leader-elect", help="With --source kubernetes: write status only while holding a coordination.k8s.io Lease (every replica serves)."),
    lease_name: str = typer.Option("poolgate-gateway", "--lease-name", help="Name of the status writer's Lease."),
    lease_namespace: str | None = typer.Option(None, "--lease-namespace", help="Namespace of the Lease; default: $POD_NAMESPACE, else the credentials' namespace."),
    lease_duration: float = typer.Option(15.0, "--lease-duration", min=1, help="Seconds a Lease not renewed stays with its holder."),
    renew_deadline: float = typer.Option(10.0, "--renew-deadline", min=0.1, help="The status writer steps down after failing to renew this long."),
    retry_period: float = typer.Option(2.0, "--retry-period", min=0.05, help="Seconds between reads/renewals of the Lease."),
    shared_load_redis: str | None = typer.Option(None, "--shared-load-redis", envvar="KV_ENDPOINTS", show_envvar=True, help="Redis nodes HOST:PORT[,HOST:PORT] (the KV_ENDPOINTS format) through which several gateway replicas share their in-flight counts (docs/scheduling.md, 'Several gateway replicas'); empty: local counts only."),
    shared_load_replica_id: str | None = typer.Option(None, "--shared-load-replica-id", help="This replica's name in the shared in-flight view (default: HOSTNAME-PID)."),
    shared_load_interval: float | None = typer.Option(None, "--shared-load-interval", min=0.005, help="Seconds between exchanges of in-flight counts (default 0.05)."),
    shared_load_staleness: float | None = typer.Option(None, "--shared-load-staleness", min=0.01, help="Other replicas' counts older than this many seconds are not used (default 1.0; at least twice the interval)."),
    shared_load_key: str | None = typer.Option(None, "--shared-load-key", help="Redis key of the shared in-flight table (default poolgate:gateway-load); replicas sharing one key add up each other's counts."),
) -> None:
    """Run the gateway from Gateway API / Inference Extension manifests (files or the API)."""
    from poolgate.proxy.gateway import GatewayOptions
    from poolgate.proxy.run import run_serve
    from poolgate.proxy.server import ServeOptions

    if not retry_period < renew_deadline < lease_duration:
        raise typer.BadParameter("needs --retry-period < --renew-deadline < --lease-duration",
                                 param_hint="--renew-deadline")
    from poolgate.kube.leader import LeaseTiming

    custom = _gateway_checks(log_level, files, discovery, source, kubeconfig, scheduler_profile,
                             scheduler_config)
    kube_options = _kube_options(source, files, namespaces, controller_names, publish_service,
                                 leader_elect, lease_name, lease_namespace, kubeconfig,
                                 LeaseTiming(lease_duration, renew_deadline, retry_period))
    from poolgate.balancing.regions import RegionOrder

    placement = RegionOrder.parse(region, region_order)
    shared_load = _shared_load_settings(shared_load_redis, shared_load_replica_id,
                                        shared_load_interval, shared_load_staleness,
                                        shared_load_key)
    options = ServeOptions(
        paths=list(files), host=host, port=port, port_map=_parse_port_map(port_map),
        reuse_port=reuse_port, admin_host=admin_host, admin_port=admin_port, access_log=access_log, watch=watch,
        drain_seconds=drain_seconds, scrape_interval=scrape_interval,
        scrape_idle_interval=scrape_idle_interval, scrape_idle_after=scrape_idle_after,
        discovery="kubernetes" if source == "kubernetes" else discovery, kubeconfig=kubeconfig,
        source=source, kube=kube_options, shared_load=shared_load,
        gateway=GatewayOptions(max_body_bytes=max_body_bytes, connect_timeout=connect_timeout,
                               seed=seed, scheduler_profile=scheduler_profile,
                               custom_profiles=MappingProxyType(custom),
                               saturation_queue=saturation_queue, saturation_kv=saturation_kv,
                               staleness=metrics_staleness, region=placement.home,
                               region_order=placement.order),
    )
    raise typer.Exit(run_serve(options))


@app.command("epp")
def epp(
    files: list[Path] = typer.Option([], "-f", "--file", help="Manifest file or directory (repeatable); with --source kubernetes, local overrides."),
    grpc_port: int = typer.Option(9002, "--grpc-port", min=0, max=65535, help="Port of the gRPC ext_proc server and gRPC health (the Inference Extension's EPP uses 9002)."),
    host: str = typer.Option("0.0.0.0", "--host", help="Address the gRPC server binds."),
    admin_port: int = typer.Option(9901, "--admin-port", help="Admin listener port (/metrics /healthz /readyz /status)."),
    admin_host: str = typer.Option("127.0.0.1", "--admin-host", help="Admin listener address."),
    access_log: str = typer.Option("-", "--access-log", help="'-' for stdout, 'off', or a file path (one line per request picked)."),
    max_body_bytes: int = typer.Option(16 << 20, "--max-body-bytes", min=1, help="Largest request body read (413 above)."),
    watch: bool = typer.Option(True, "--watch/--no-watch", help="Reload the manifests when they change."),
    drain_seconds: float = typer.Option(30.0, "--drain-seconds", min=0, help="On stop, wait this long for the streams in flight."),
    seed: int | None = typer.Option(None, "--seed", help="Seed random choices for reproducible runs."),
    scheduler_profile: str = typer.Option("default", "--scheduler-profile", help="Endpoint-picker profile for pools without the poolgate.dev/scheduler-profile annotation."),
    scheduler_config: Path | None = typer.Option(None, "--scheduler-config", help="YAML file of custom scheduler profiles."),
    scrape_interval: float = typer.Option(0.05, "--scrape-interval", min=0.005, help="Seconds between scrapes of each endpoint's /metrics."),
    scrape_idle_interval: float = typer.Option(1.0, "--scrape-idle-interval", min=0.0, help="Seconds between scrapes of an idle pool's endpoints (at most half of --metrics-staleness; 0: as often as busy ones)."),
    scrape_idle_after: float = typer.Option(3.0, "--scrape-idle-after", min=0.0, help="A pool with no request for this many seconds is idle."),
    metrics_staleness: float = typer.Option(2.0, "--metrics-staleness", min=0.01, help="Metrics older than this many seconds count as unknown."),
    saturation_queue: int = typer.Option(5, "--saturation-queue", min=0, help="Saturation threshold: waiting requests."),
    saturation_kv: float = typer.Option(0.8, "--saturation-kv", min=0.0, max=1.0, help="Saturation threshold: KV-cache utilisation."),
    log_level: str = typer.Option("info", "--log-level", help="debug, info, warning or error."),
    discovery: str = typer.Option("local", "--discovery", help="'local' (LocalEndpoints) or 'kubernetes' (the Ready pods each InferencePool selects)."),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="Outside a cluster: the kubeconfig for --source/--discovery kubernetes."),
    source: str = typer.Option("files", "--source", help="'files' (-f) or 'kubernetes' (the objects of the API)."),
    namespaces: list[str] = typer.Option([], "--namespace", "-n", help="With --source kubernetes: watch only this namespace (repeatable)."),
    controller_names: list[str] = typer.Option([], "--controller-name", help="With --source kubernetes: the GatewayClass controllerName(s) whose Gateways' routes are read."),
    shared_load_redis: str | None = typer.Option(None, "--shared-load-redis", envvar="KV_ENDPOINTS", show_envvar=True, help="Redis nodes HOST:PORT[,HOST:PORT] (the KV_ENDPOINTS format) through which several gateway replicas share their in-flight counts (docs/scheduling.md, 'Several gateway replicas'); empty: local counts only."),
    shared_load_replica_id: str | None = typer.Option(None, "--shared-load-replica-id", help="This replica's name in the shared in-flight view (default: HOSTNAME-PID)."),
    shared_load_interval: float | None = typer.Option(None, "--shared-load-interval", min=0.005, help="Seconds between exchanges of in-flight counts (default 0.05)."),
    shared_load_staleness: float | None = typer.Option(None, "--shared-load-staleness", min=0.01, help="Other replicas' counts older than this many seconds are not used (default 1.0; at least twice the interval)."),
    shared_load_key: str | None = typer.Option(None, "--shared-load-key", help="Redis key of the shared in-flight table (default poolgate:gateway-load); replicas sharing one key add up each other's counts."),
) -> None:
    """Run the endpoint picker behind Envoy: gRPC ext_proc (the Inference Extension's protocol)."""
    from poolgate.kube.leader import LeaseTiming
    from poolgate.proxy.gateway import GatewayOptions
    from poolgate.proxy.run import run_serve
    from poolgate.proxy.server import ServeOptions

    custom = _gateway_checks(log_level, files, discovery, source, kubeconfig, scheduler_profile,
                             scheduler_config)
    # The picker writes no status: the Gateway's controller (Envoy Gateway, GKE, ...) does.
    kube_options = dataclasses.replace(
        _kube_options(source, files, namespaces, controller_names, None, False, "poolgate-epp",
                      None, kubeconfig, LeaseTiming()), write_status=False)
    shared_load = _shared_load_settings(shared_load_redis, shared_load_replica_id,
                                        shared_load_interval, shared_load_staleness,
                                        shared_load_key)
    options = ServeOptions(
        paths=list(files), host=host, admin_host=admin_host, admin_port=admin_port,
        access_log=access_log, watch=watch, drain_seconds=drain_seconds,
        scrape_interval=scrape_interval, scrape_idle_interval=scrape_idle_interval,
        scrape_idle_after=scrape_idle_after,
        discovery="kubernetes" if source == "kubernetes" else discovery, kubeconfig=kubeconfig,
        source=source, kube=kube_options, front="ext_proc", grpc_port=grpc_port,
        shared_load=shared_load,
        gateway=GatewayOptions(max_body_bytes=max_body_bytes, seed=seed,
                               scheduler_profile=scheduler_profile,
                               custom_profiles=MappingProxyType(custom),
                               saturation_queue=saturation_queue, saturation_kv=saturation_kv,
                               staleness=metrics_staleness),
    )
    raise typer.Exit(run_serve(options))


def _gateway_checks(log_level: str, files: list[Path], discovery: str, source: str,
                    kubeconfig: Path | None, scheduler_profile: str,
                    scheduler_config: Path | None) -> dict[str, SchedulerConfig]:
    """The settings `serve` and `epp` share, checked (logging configured on the way); returns
    the custom scheduler profiles of `--scheduler-config`."""
    from poolgate.observability.logs import configure_logging
    from poolgate.scheduling.profiles import BUILTIN_PROFILES

    try:
        configure_logging(log_level)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--log-level") from None
    for f in files:
        if not f.exists():
            raise typer.BadParameter(f"{f} does not exist", param_hint="-f")
    if discovery not in ("local", "kubernetes"):
        raise typer.BadParameter(f"{discovery!r}: choose local or kubernetes",
                                 param_hint="--discovery")
    if kubeconfig is not None and discovery != "kubernetes" and source != "kubernetes":
        raise typer.BadParameter("only used with --source or --discovery kubernetes",
                                 param_hint="--kubeconfig")
    if kubeconfig is not None and not kubeconfig.is_file():
        raise typer.BadParameter(f"{kubeconfig} does not exist", param_hint="--kubeconfig")
    custom = _load_scheduler_config(scheduler_config)
    if scheduler_profile not in BUILTIN_PROFILES and scheduler_profile not in custom:
        known = sorted([*BUILTIN_PROFILES, *custom])
        raise typer.BadParameter(
            f"unknown profile {scheduler_profile!r}; choose one of {', '.join(known)}",
            param_hint="--scheduler-profile")
    return custom


def _shared_load_settings(redis: str | None, replica_id: str | None, interval: float | None,
                          staleness: float | None, key: str | None) -> SharedLoadSettings | None:
    """The shared in-flight view's settings (None without Redis nodes), checked: a bad value,
    or a setting given without nodes, is a usage error naming its flag."""
    from poolgate.state.kv_endpoints import parse_kv_endpoints
    from poolgate.state.shared_load import (
        DEFAULT_INTERVAL,
        DEFAULT_KEY,
        DEFAULT_STALENESS,
        SharedLoadSettings,
        default_replica_id,
    )

    try:
        nodes = parse_kv_endpoints(redis or "")
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--shared-load-redis") from None
    flags = {"replica_id": ("--shared-load-replica-id", replica_id),
             "interval": ("--shared-load-interval", interval),
             "staleness": ("--shared-load-staleness", staleness),
             "key": ("--shared-load-key", key)}
    if not nodes:
        for flag, given in flags.values():
            if given is not None:
                raise typer.BadParameter("only used with --shared-load-redis (or KV_ENDPOINTS)",
                                         param_hint=flag)
        return None
    try:
        return SharedLoadSettings(
            nodes, default_replica_id() if replica_id is None else replica_id,
            DEFAULT_INTERVAL if interval is None else interval,
            DEFAULT_STALENESS if staleness is None else staleness,
            DEFAULT_KEY if key is None else key)
    except ValueError as e:
        field, _, problem = str(e).partition(": ")
        raise typer.BadParameter(problem, param_hint=flags.get(field, ("--shared-load-redis", None))[0]) from None


def _kube_options(source: str, files: list[Path], namespaces: list[str],
                  controller_names: list[str], publish_service: str | None, leader_elect: bool,
                  lease_name: str, lease_namespace: str | None,
                  kubeconfig: Path | None, timing: LeaseTiming) -> KubeOptions:
    """The `--source kubernetes` settings, checked: each is refused without that mode."""
    from poolgate.proxy.kube_mode import KubeOptions

    if source not in ("files", "kubernetes"):
        raise typer.BadParameter(f"{source!r}: choose files or kubernetes", param_hint="--source")
    if source == "files":
        if not files:
            raise typer.BadParameter("give the manifests with -f (or use --source kubernetes)",
                                     param_hint="-f")
        for given, hint in ((namespaces, "--namespace"), (controller_names, "--controller-name"),
                            (publish_service, "--publish-service"),
                            (lease_namespace, "--lease-namespace")):
            if given:
                raise typer.BadParameter("only used with --source kubernetes", param_hint=hint)
        return KubeOptions(kubeconfig=kubeconfig)
    if publish_service is not None and publish_service.count("/") != 1:
        raise typer.BadParameter(f"{publish_service!r}: expected NAMESPACE/NAME",
                                 param_hint="--publish-service")
    for name in controller_names:
        domain, _, path = name.partition("/")
        if not domain or not path or "." not in domain:
            raise typer.BadParameter(f"{name!r}: a controller name is DOMAIN/PATH, e.g. "
                                     "poolgate.dev/gateway-controller",
                                     param_hint="--controller-name")
    defaults = KubeOptions()
    return KubeOptions(
        kubeconfig=kubeconfig, namespaces=tuple(namespaces),
        controller_names=tuple(controller_names) or defaults.controller_names,
        publish_service=publish_service, leader_elect=leader_elect, lease_name=lease_name,
        lease_namespace=lease_namespace, timing=timing)


def _load_scheduler_config(path: Path | None) -> dict[str, SchedulerConfig]:
    """The custom profiles of `--scheduler-config` (none without it); a bad file is a usage
    error naming the file, the document and the problem."""
    if path is None:
        return {}
    from poolgate.scheduling.errors import SchedulerConfigError
    from poolgate.scheduling.profile_file import load_profile_file

    try:
        return load_profile_file(path)
    except SchedulerConfigError as e:
        raise typer.BadParameter(str(e), param_hint="--scheduler-config") from None


def _spread_values(extra: list[str], served: list[str], loras: list[str],
                   labels: list[str]) -> None:
    """Attribute values given vLLM-style after one flag (`--lora-modules a=x b=y`) to that flag."""
    if not extra:
        return
    with_eq = [v for v in extra if "=" in v]
    without = [v for v in extra if "=" not in v]
    if without:
        if not served:
            raise typer.BadParameter(f"unexpected argument(s) {without}")
        served += without
    if with_eq:
        if loras and labels:
            raise typer.BadParameter("repeat --lora-modules / --endpoints-label before each value "
                                     "when both are given")
        if not loras and not labels:
            raise typer.BadParameter(f"unexpected argument(s) {with_eq}")
        (loras if loras else labels).extend(with_eq)


@app.command("sim", context_settings={"allow_extra_args": True})
def sim(
    ctx: typer.Context,
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Number of simulated servers.")] = 1,
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="First port; replica i listens on PORT+i.")] = 8000,
    host: Annotated[str, typer.Option("--host", help="Address the replicas bind.")] = "127.0.0.1",
    model: Annotated[str, typer.Option("--model", help="Model path (the `root` in /v1/models).")] = "/model/llama2",
    served_model_name: Annotated[list[str] | None, typer.Option("--served-model-name", help="Name(s) clients use; the first is reported (repeatable).")] = None,
    lora_modules: Annotated[list[str] | None, typer.Option("--lora-modules", help="NAME=PATH of a LoRA adapter loaded at start (repeatable).")] = None,
    max_loras: Annotated[int, typer.Option("--max-loras", min=1, help="LoRA adapter slots in the batch.")] = 1,
    max_num_seqs: Annotated[int | None, typer.Option("--max-num-seqs", min=1, help="Running-batch slots (default: profile).")] = None,
    max_model_len: Annotated[int | None, typer.Option("--max-model-len", min=1, help="Context length (default: profile).")] = None,
    kv_cache_blocks: Annotated[int | None, typer.Option("--kv-cache-blocks", min=1, help="KV-cache blocks (default: profile).")] = None,
    block_size: Annotated[int, typer.Option("--block-size", min=1, help="Tokens per KV-cache block.")] = 16,
    max_waiting: Annotated[int | None, typer.Option("--max-waiting", min=0, help="Waiting-queue limit; beyond it 429 (default: unbounded).")] = None,
    profile: Annotated[str, typer.Option("--profile", help="h100-llama3-8b, a10-llama2-7b, fast or zero.")] = "h100-llama3-8b",
    time_scale: Annotated[float, typer.Option("--time-scale", help="Divide every simulated duration by this (10 = 10x faster).")] = 1.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every random choice.")] = 0,
    stream_interval: Annotated[int, typer.Option("--stream-interval", min=1, help="Tokens per streamed chunk.")] = 1,
    startup_delay: Annotated[float, typer.Option("--startup-delay", min=0, help="Simulated seconds /health answers 503 after start.")] = 0.0,
    fault_error_rate: Annotated[float, typer.Option("--fault-error-rate", min=0, max=1, help="Fraction of generation requests answered with --fault-error-status.")] = 0.0,
    fault_error_status: Annotated[int, typer.Option("--fault-error-status", min=400, max=599, help="Status of injected errors.")] = 503,
    fault_latency: Annotated[float, typer.Option("--fault-latency", min=0, help="Simulated seconds added before each generation request.")] = 0.0,
    fault_hang_rate: Annotated[float, typer.Option("--fault-hang-rate", min=0, max=1, help="Fraction of generation requests accepted and never answered.")] = 0.0,
    fault_crash_after_tokens: Annotated[int | None, typer.Option("--fault-crash-after-tokens", min=0, help="Cut every generation's connection after N tokens.")] = None,
    endpoints_file: Annotated[Path | None, typer.Option("--endpoints-file", help="Write a LocalEndpoints YAML for this fleet.")] = None,
    endpoints_name: Annotated[str | None, typer.Option("--endpoints-name", help="metadata.name of the LocalEndpoints (default: file stem).")] = None,
    endpoints_label: Annotated[list[str] | None, typer.Option("--endpoints-label", help="K=V label of the LocalEndpoints (repeatable).")] = None,
    kv_events_config: Annotated[str | None, typer.Option("--kv-events-config", help="vLLM's KV-event publisher config (JSON); replica i offsets both ports by i.")] = None,
) -> None:
    """Run simulated vLLM model servers (one per port, in one process)."""
    from poolgate.sim.faults import FaultSettings
    from poolgate.sim.fleet import run_sim
    from poolgate.sim.kv_events import parse_kv_events_config, replica_endpoints
    from poolgate.sim.options import SimOptions, parse_lora_module

    served_model_name = list(served_model_name or ())
    lora_modules = list(lora_modules or ())
    endpoints_label = list(endpoints_label or ())
    _spread_values(list(ctx.args), served_model_name, lora_modules, endpoints_label)
    try:
        loras = tuple(parse_lora_module(v) for v in lora_modules or ())
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--lora-modules") from None
    labels: dict[str, str] = {}
    for item in endpoints_label or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected K=V, got {item!r}", param_hint="--endpoints-label")
        labels[key] = value
    if port and port + replicas - 1 > 65535:
        raise typer.BadParameter(f"ports {port}..{port + replicas - 1} exceed 65535", param_hint="--port")
    kv_events = None
    if kv_events_config is not None:
        try:
            kv_events = parse_kv_events_config(kv_events_config)
            if kv_events.active:
                replica_endpoints(kv_events, replicas)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--kv-events-config") from None
    try:
        options = SimOptions(
            model=model, served_model_names=tuple(served_model_name or ()), lora_modules=loras,
            max_loras=max_loras, max_num_seqs=max_num_seqs, max_model_len=max_model_len,
            kv_cache_blocks=kv_cache_blocks, block_size=block_size, max_waiting=max_waiting,
            profile=profile, time_scale=time_scale, seed=seed, stream_interval=stream_interval,
            startup_delay=startup_delay,
            faults=FaultSettings(
                error_rate=fault_error_rate, error_status=fault_error_status,
                added_latency=fault_latency, hang_rate=fault_hang_rate,
                crash_after_tokens=fault_crash_after_tokens,
            ),
            kv_events=kv_events,
        )
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    raise typer.Exit(run_sim(options, host, port, replicas, endpoints_file, endpoints_name, labels))


@app.command("top")
def top(
    admin: str = typer.Option("http://127.0.0.1:9901", "--admin", help="URL of the gateway's admin listener (poolgate serve/demo/epp --admin-port)."),
    interval: float = typer.Option(1.0, "--interval", min=0.1, help="Seconds between refreshes."),
    once: bool = typer.Option(False, "--once", help="Print one frame and exit (for scripts and tests)."),
) -> None:
    """The gateway's live view in the terminal: pools, endpoints, recent picks, traffic."""
    from poolgate.observability.top import run_top

    raise typer.Exit(run_top(admin, interval=interval, once=once))


def main() -> None:
    """Entry point of the `poolgate` console script."""
    app()

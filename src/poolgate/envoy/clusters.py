"""Envoy clusters: one per backendRef (as poolgate counts its breakers), plus `poolgate epp`'s.

A Service or Address backend is a STATIC (or STRICT_DNS) cluster of its one address. An
InferencePool backend is a STATIC cluster of the pool's endpoints whose load balancer is
`envoy.load_balancing_policies.override_host`: it sends each attempt to the next address of the
list the endpoint picker put in dynamic metadata `envoy.lb` / `x-gateway-destination-endpoint`
(so retries go down the picker's fallback list) and, with no pick at all (FailOpen and the
picker unreachable), falls back to least-request over the pool's endpoints.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from poolgate.config.policy import TrafficPolicy
from poolgate.config.snapshot import Backend, Snapshot
from poolgate.core.epp_protocol import DESTINATION, LB_NAMESPACE, SERVED
from poolgate.core.pools import Endpoint, Pool
from poolgate.datalayer.health_spec import ActiveHealthCheckSpec
from poolgate.envoy.model import (
    EPP_CLUSTER,
    Config,
    EnvoyOptions,
    Notes,
    duration,
    socket_address,
    typed,
)
from poolgate.traffic.circuit_breaker import BreakerLimits
from poolgate.traffic.outlier import OutlierSpec

HTTP_OPTIONS = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
# poolgate never reuses an upstream connection idle this long: uvicorn (vLLM's server) closes
# idle connections after 5 s, and a request written to one it is closing fails.
MAX_IDLE = 4.0
# The gRPC health service `poolgate epp` reports SERVING while it can pick.
EPP_HEALTH_SERVICE = "envoy.service.ext_proc.v3.ExternalProcessor"
# The Envoy cluster a backendRef that did not resolve is sent to: no endpoints (503).
INVALID_CLUSTER = "poolgate-invalid-backend"


def is_ip(host: str) -> bool:
    """Whether `host` is an IP address (bracketed IPv6 allowed)."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _lb_endpoint(ep: Endpoint, health_port: int | None) -> Config:
    endpoint: Config = {"address": socket_address(ep.host, ep.port)}
    if health_port is not None and health_port != ep.port:
        endpoint["health_check_config"] = {"port_value": health_port}
    return {"endpoint": endpoint}


def _localities(name: str, endpoints: Sequence[Endpoint], health_port: int | None) -> Config:
    """`load_assignment`: one locality per (region, cluster) of the endpoints, in order."""
    groups: dict[tuple[str | None, str | None], list[Config]] = {}
    for ep in endpoints:
        groups.setdefault((ep.region, ep.cluster), []).append(_lb_endpoint(ep, health_port))
    localities: list[Config] = []
    for (region, cluster), eps in groups.items():
        locality: Config = {"lb_endpoints": eps}
        if region is not None or cluster is not None:
            locality["locality"] = {k: v for k, v in (("region", region), ("zone", cluster))
                                    if v is not None}
        localities.append(locality)
    return {"cluster_name": name, "endpoints": localities}


def circuit_breakers(limits: BreakerLimits) -> Config:
    """`circuitBreaker` as Envoy Gateway writes it: the DEFAULT priority's thresholds (every
    one explicit, 1024 where unset, as poolgate counts) and the per-endpoint connection cap."""
    threshold: Config = {
        "priority": "DEFAULT",
        "max_connections": limits.max_connections,
        "max_pending_requests": limits.max_pending_requests,
        "max_requests": limits.max_parallel_requests,
        "max_retries": limits.max_parallel_retries,
    }
    out: Config = {"thresholds": [threshold]}
    if limits.per_endpoint_max_connections is not None:
        out["per_host_thresholds"] = [{"priority": "DEFAULT",
                                       "max_connections": limits.per_endpoint_max_connections}]
    return out


def outlier_detection(spec: OutlierSpec) -> Config:
    """`healthCheck.passive`: consecutive-error ejection only (Envoy's success-rate detection,
    on by default, is turned off: poolgate has none)."""
    out: Config = {
        "consecutive_5xx": spec.consecutive_5xx,
        "interval": duration(spec.interval),
        "base_ejection_time": duration(spec.base_ejection_time),
        "max_ejection_percent": spec.max_ejection_percent,
        "enforcing_success_rate": 0,
        "split_external_local_origin_errors": spec.split_external_local_origin_errors,
        "consecutive_local_origin_failure": spec.consecutive_local_origin_failure,
        "always_eject_one_host": spec.always_eject_one,
    }
    if spec.consecutive_gateway_failure:
        out["consecutive_gateway_failure"] = spec.consecutive_gateway_failure
        out["enforcing_consecutive_gateway_failure"] = 100
    if spec.max_ejection_time is not None:
        out["max_ejection_time"] = duration(spec.max_ejection_time)
    return out


def health_check(spec: ActiveHealthCheckSpec) -> Config:
    """An active HTTP health check (`healthCheck.active`, HealthCheckPolicy)."""
    http: Config = {
        "path": spec.path or "/",
        "expected_statuses": [{"start": s, "end": s + 1} for s in sorted(spec.expected_statuses)],
    }
    if spec.method != "GET":
        http["method"] = spec.method
    return {
        "timeout": duration(spec.timeout),
        "interval": duration(spec.interval),
        "unhealthy_threshold": spec.unhealthy_threshold,
        "healthy_threshold": spec.healthy_threshold,
        "http_health_check": http,
    }


def _protocol_options(limits: BreakerLimits, policy: TrafficPolicy | None) -> Config:
    """HTTP/1.1 upstream options: the idle timeout (capped as poolgate does) and
    `maxRequestsPerConnection`."""
    idle = MAX_IDLE
    if policy is not None and policy.connection_idle_timeout:
        idle = min(idle, policy.connection_idle_timeout)
    common: Config = {"idle_timeout": duration(idle)}
    if limits.max_requests_per_connection is not None:
        common["max_requests_per_connection"] = limits.max_requests_per_connection
    return {HTTP_OPTIONS: typed(HTTP_OPTIONS, common_http_protocol_options=common,
                                explicit_http_config={"http_protocol_options": {}})}


def _override_host_policy() -> Config:
    """The load balancer of a pool cluster: the picker's list first, least-request without one."""
    metadata_key = {"key": LB_NAMESPACE, "path": [{"key": DESTINATION}]}
    fallback = {"policies": [{"typed_extension_config": {
        "name": "envoy.load_balancing_policies.least_request",
        "typed_config": typed(
            "envoy.extensions.load_balancing_policies.least_request.v3.LeastRequest"),
    }}]}
    return {"policies": [{"typed_extension_config": {
        "name": "envoy.load_balancing_policies.override_host",
        "typed_config": typed(
            "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
            override_host_sources=[{"metadata": metadata_key}],
            # The endpoint that served, for the picker (its response messages carry `envoy.lb`).
            selected_host_key={"key": LB_NAMESPACE, "path": [{"key": SERVED}]},
            fallback_policy=fallback,
        ),
    }}]}


def backend_cluster(snapshot: Snapshot, backend: Backend, policy: TrafficPolicy | None,
                    options: EnvoyOptions, notes: Notes) -> Config:
    """The cluster of one resolved backendRef (`backend.key` is its name)."""
    limits = (policy.circuit_breaker if policy is not None else None) or BreakerLimits()
    connect = policy.connect_timeout if policy is not None and policy.connect_timeout else None
    cluster: Config = {
        "name": backend.key,
        "connect_timeout": duration(connect if connect is not None else options.connect_timeout),
        "circuit_breakers": circuit_breakers(limits),
        "typed_extension_protocol_options": _protocol_options(limits, policy),
    }
    pool = backend.pool
    if pool is None:
        assert backend.host is not None and backend.port is not None
        endpoint = Endpoint(backend.host, backend.port)
        cluster["type"] = "STATIC" if is_ip(backend.host) else "STRICT_DNS"
        if cluster["type"] == "STRICT_DNS":
            cluster["dns_lookup_family"] = "V4_PREFERRED"
        cluster["lb_policy"] = "LEAST_REQUEST"
        cluster["load_assignment"] = _localities(backend.key, [endpoint], None)
    else:
        _pool_cluster(cluster, snapshot, backend, pool, notes)
    outlier = policy.outlier if policy is not None else None
    if outlier is not None:
        cluster["outlier_detection"] = outlier_detection(outlier)
    return cluster


def _pool_cluster(cluster: Config, snapshot: Snapshot, backend: Backend, pool: Pool,
                  notes: Notes) -> None:
    check = snapshot.health_checks.get(pool.key)
    named = [ep for ep in pool.endpoints if not is_ip(ep.host)]
    if named:
        notes.add(f"InferencePool {pool.key}", "endpoints",
                  f"{', '.join(ep.address for ep in named)} are host names: Envoy knows the "
                  "pool's hosts by IP, so a pick naming them falls back to least-request "
                  "(declare IP addresses in the LocalEndpoints)")
    endpoints = [ep for ep in pool.endpoints if is_ip(ep.host)]
    cluster["type"] = "STATIC"
    # A HealthCheckPolicy port equal to the pool's target port means each endpoint's own port
    # (LocalEndpoints may declare others), as poolgate's health checker reads it.
    port = check.port if check is not None and check.port != pool.target_port else None
    cluster["load_assignment"] = _localities(backend.key, endpoints, port)
    cluster["load_balancing_policy"] = _override_host_policy()
    if check is not None:
        cluster["health_checks"] = [health_check(check)]


def invalid_cluster() -> Config:
    """The cluster a share of traffic for an unresolved backendRef goes to (no endpoints)."""
    return {"name": INVALID_CLUSTER, "type": "STATIC", "connect_timeout": "1s",
            "load_assignment": {"cluster_name": INVALID_CLUSTER, "endpoints": []}}


def epp_cluster(options: EnvoyOptions) -> Config:
    """`poolgate epp`'s gRPC cluster (HTTP/2). Its limits are raised far above Envoy's 1024
    defaults: every request to a pool holds one ext_proc stream for its whole life.

    The picker is health-checked over gRPC every second, without panic mode: a picker known to
    be down fails the ext_proc stream before the request body is sent, the one moment Envoy
    1.40 can still let a FailOpen request through (FULL_DUPLEX_STREAMED keeps no copy of the
    body it has handed over)."""
    host = options.epp_host
    cluster: Config = {
        "name": EPP_CLUSTER,
        "type": "STATIC" if is_ip(host) else "STRICT_DNS",
        "connect_timeout": "1s",
        "common_lb_config": {"healthy_panic_threshold": {"value": 0}},
        "health_checks": [{
            "timeout": "1s", "interval": "1s", "no_traffic_interval": "1s",
            "unhealthy_threshold": 1, "healthy_threshold": 1,
            "grpc_health_check": {"service_name": EPP_HEALTH_SERVICE},
        }],
        "circuit_breakers": {"thresholds": [{
            "priority": "DEFAULT", "max_connections": 40000, "max_pending_requests": 40000,
            "max_requests": 40000, "max_retries": 1024,
        }]},
        "typed_extension_protocol_options": {HTTP_OPTIONS: typed(
            HTTP_OPTIONS, explicit_http_config={"http2_protocol_options": {}})},
        "load_assignment": {"cluster_name": EPP_CLUSTER, "endpoints": [
            {"lb_endpoints": [{"endpoint": {"address": socket_address(host, options.epp_port)}}]},
        ]},
    }
    if cluster["type"] == "STRICT_DNS":
        cluster["dns_lookup_family"] = "V4_PREFERRED"
    return cluster

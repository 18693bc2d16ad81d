"""The HTTP side of a listener: the connection manager, its filters, and their per-route parts.

Filters, in order: one `envoy.filters.http.local_ratelimit/NS/NAME` per BackendTrafficPolicy
with local rate-limit rules (the policy's buckets are shared by every route it covers, as in
poolgate), the ext_proc filter that asks `poolgate epp` for the endpoint, and the router. The
first two are disabled by default and enabled only on the routes that need them.
"""

from __future__ import annotations

from poolgate.config.policy import TrafficPolicy
from poolgate.config.snapshot import Backend
from poolgate.core.epp_protocol import (
    BACKEND_REF_METADATA,
    DESTINATION,
    EXT_PROC_FILTER,
    LB_NAMESPACE,
    SERVED,
    SUBSET,
    SUBSET_NAMESPACE,
)
from poolgate.envoy.model import EPP_CLUSTER, Config, Notes, duration, typed

HCM = "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
LOCAL_RATE_LIMIT = "envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
EXT_PROC = "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor"
EXT_PROC_PER_ROUTE = "envoy.extensions.filters.http.ext_proc.v3.ExtProcPerRoute"
ENABLE = typed("envoy.config.route.v3.FilterConfig", config={})

# Headers only a proxy may set, dropped from what clients send before any filter runs (as
# `poolgate serve` does): a client never chooses the endpoint.
CLIENT_HEADERS_DROPPED = (DESTINATION, SUBSET, SERVED, "x-forwarded-host")

# The access log: one JSON line per request on stdout, with poolgate's field names where the
# meaning is the same.
ACCESS_LOG_FORMAT = {
    "start_time": "%START_TIME%",
    "method": "%REQ(:METHOD)%",
    "path": "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%",
    "host": "%REQ(:AUTHORITY)%",
    "status": "%RESPONSE_CODE%",
    "flag": "%RESPONSE_FLAGS%",
    "route": "%ROUTE_NAME%",
    "backend": "%UPSTREAM_CLUSTER%",
    "endpoint": "%UPSTREAM_HOST%",
    "duration_ms": "%DURATION%",
    "bytes_received": "%BYTES_RECEIVED%",
    "bytes_sent": "%BYTES_SENT%",
    "request_id": "%REQ(X-REQUEST-ID)%",
    "details": "%RESPONSE_CODE_DETAILS%",
}


def rate_limit_filter_name(policy: TrafficPolicy) -> str:
    """The filter instance of one policy's local rate limit."""
    return f"envoy.filters.http.local_ratelimit/{policy.namespace}/{policy.name}"


def _all_requests() -> Config:
    return {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def rate_limit_filter(policy: TrafficPolicy, notes: Notes) -> Config | None:
    """The local rate limit of a policy: its first rule is the filter's token bucket (full at
    start, `requests` tokens per `unit`), every further rule a descriptor every request
    matches. None when no rule can be expressed."""
    subject = f"BackendTrafficPolicy {policy.namespace}/{policy.name}"
    rules = []
    for i, rule in enumerate(policy.rate_limits):
        if rule.requests == 0:
            notes.add(subject, f"spec.rateLimit.local.rules[{i}]",
                      "a limit of 0 requests has no Envoy token bucket (max_tokens must be > 0)")
            continue
        rules.append({"max_tokens": rule.requests, "tokens_per_fill": rule.requests,
                      "fill_interval": duration(rule.unit_seconds)})
    if not rules:
        return None
    config: Config = {
        "stat_prefix": f"local_rate_limit_{policy.namespace}_{policy.name}",
        "token_bucket": rules[0],
        "filter_enabled": _all_requests(),
        "filter_enforced": _all_requests(),
        # Envoy Gateway's default (ClientTrafficPolicy headers.disableRateLimitHeaders unset).
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    }
    if len(rules) > 1:
        config["descriptors"] = [
            {"entries": [{"key": "generic_key", "value": f"rule-{i}"}], "token_bucket": bucket}
            for i, bucket in enumerate(rules[1:], start=1)
        ]
        config["rate_limits"] = [{"actions": [{"generic_key": {"descriptor_value": f"rule-{i}"}}]}
                                 for i in range(1, len(rules))]
        notes.add(subject, "spec.rateLimit.local.rules",
                  "several rules: Envoy checks every bucket but may take a token from one even "
                  "when another refuses the request (poolgate takes none then)")
    return {"name": rate_limit_filter_name(policy), "disabled": True,
            "typed_config": typed(LOCAL_RATE_LIMIT, **config)}


def ext_proc_filter(response_body_mode: str = "FULL_DUPLEX_STREAMED") -> Config:
    """The ext_proc filter as the Inference Extension sets it up for its endpoint picker:
    request headers and body (FULL_DUPLEX_STREAMED, trailers sent, as Envoy requires with that
    mode) and response headers and body the same way (or as `response_body_mode` says; the
    picker may then override it per request, to skip a body it does not need); `envoy.lb` and
    the subset hint forwarded, `envoy.lb` accepted back, the upstream address reported with the
    response. Disabled unless a route enables it (routes to an InferencePool), which also sets
    FailOpen / FailClose."""
    duplex = response_body_mode == "FULL_DUPLEX_STREAMED"
    config: Config = {
        "grpc_service": {"envoy_grpc": {"cluster_name": EPP_CLUSTER}, "timeout": "10s"},
        "failure_mode_allow": False,
        "processing_mode": {
            "request_header_mode": "SEND",
            "request_body_mode": "FULL_DUPLEX_STREAMED",
            "request_trailer_mode": "SEND",
            "response_header_mode": "SEND",
            "response_body_mode": response_body_mode,
            "response_trailer_mode": "SEND" if duplex else "SKIP",
        },
        "message_timeout": "1000s",
        "response_attributes": ["upstream.address"],
        "metadata_options": {
            "forwarding_namespaces": {"untyped": [LB_NAMESPACE, SUBSET_NAMESPACE]},
            "receiving_namespaces": {"untyped": [LB_NAMESPACE]},
        },
    }
    if not duplex:
        config["allow_mode_override"] = True
    return {"name": EXT_PROC_FILTER, "disabled": True, "typed_config": typed(EXT_PROC, **config)}


def ext_proc_per_route(backend: Backend) -> Config:
    """What enables the ext_proc filter for a pool backend: the pool's failure mode (FailOpen:
    the request goes on without a pick, to the least-loaded endpoint) and the backendRef key."""
    assert backend.pool is not None
    return typed(EXT_PROC_PER_ROUTE, overrides={
        "failure_mode_allow": backend.pool.failure_mode == "FailOpen",
        "grpc_initial_metadata": [{"key": BACKEND_REF_METADATA, "value": backend.key}],
    })


def router_filter(envoy_headers: bool) -> Config:
    """The router; `x-envoy-*` response headers only when a ClientTrafficPolicy enables them."""
    return {"name": "envoy.filters.http.router", "typed_config": typed(
        "envoy.extensions.filters.http.router.v3.Router",
        suppress_envoy_headers=not envoy_headers)}


def connection_manager(port: int, route_config: Config, http_filters: list[Config]) -> Config:
    """The HTTP connection manager of one listener, with Envoy Gateway's edge settings (the
    client's address from the connection, paths normalized, host port ignored in matching)."""
    drop = [{"remove": name} for name in CLIENT_HEADERS_DROPPED]
    return {"name": "envoy.filters.network.http_connection_manager", "typed_config": typed(
        HCM,
        stat_prefix=f"http-{port}",
        codec_type="AUTO",
        use_remote_address=True,
        normalize_path=True,
        merge_slashes=True,
        path_with_escaped_slashes_action="UNESCAPE_AND_REDIRECT",
        strip_any_host_port=True,
        strip_trailing_host_dot=True,
        early_header_mutation_extensions=[{
            "name": "envoy.http.early_header_mutation.header_mutation",
            "typed_config": typed(
                "envoy.extensions.http.early_header_mutation.header_mutation.v3.HeaderMutation",
                mutations=drop),
        }],
        access_log=[{"name": "envoy.access_loggers.stdout", "typed_config": typed(
            "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
            log_format={"json_format": ACCESS_LOG_FORMAT})}],
        route_config=route_config,
        http_filters=http_filters,
    )}

"""Envoy Gateway resources (`gateway.envoyproxy.io/v1alpha1`): BackendTrafficPolicy, ClientTrafficPolicy, EnvoyProxy."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from poolgate.api._base import ApiModel, Resource
from poolgate.api.durations import Duration

UInt32 = Annotated[int, Field(ge=0, le=4_294_967_295)]
RetryTrigger = Literal[
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
    "refused-stream", "retriable-status-codes", "cancelled", "deadline-exceeded", "internal",
    "resource-exhausted", "unavailable",
]


class PolicyTargetReference(ApiModel):
    """`targetRef` / `targetRefs[]`: a Gateway or HTTPRoute in the policy's namespace."""

    group: str = "gateway.networking.k8s.io"
    kind: str
    name: Annotated[str, Field(min_length=1)]
    section_name: str | None = None


class PolicySpec(ApiModel):
    """Fields every Envoy Gateway policy has: its targets."""

    # Envoy Gateway's CRD fields are as of its main branch in 2026-08 (charts/gateway-helm CRDs).
    NOT_ACTED_ON = frozenset({"targetSelectors"})

    target_ref: PolicyTargetReference | None = None
    target_refs: list[PolicyTargetReference] = Field(default_factory=list)

    @property
    def targets(self) -> list[PolicyTargetReference]:
        """`targetRef` and `targetRefs` together."""
        return ([self.target_ref] if self.target_ref else []) + list(self.target_refs)


class PerEndpointCircuitBreaker(ApiModel):
    """`circuitBreaker.perEndpoint`."""

    max_connections: UInt32 | None = None


class CircuitBreaker(ApiModel):
    """`circuitBreaker`: Envoy cluster thresholds, counted per backendRef."""

    NOT_ACTED_ON = frozenset({"retryBudget"})

    max_connections: UInt32 | None = None
    max_pending_requests: UInt32 | None = None
    max_parallel_requests: UInt32 | None = None
    max_parallel_retries: UInt32 | None = None
    max_requests_per_connection: UInt32 | None = None
    per_endpoint: PerEndpointCircuitBreaker | None = None


class RetryOn(ApiModel):
    """`retry.retryOn`."""

    triggers: list[RetryTrigger] | None = None
    http_status_codes: list[Annotated[int, Field(ge=100, le=599)]] | None = None


class BackOffPolicy(ApiModel):
    """`retry.perRetry.backOff`."""

    base_interval: Duration | None = None
    max_interval: Duration | None = None


class PerRetryPolicy(ApiModel):
    """`retry.perRetry`."""

    timeout: Duration | None = None
    back_off: BackOffPolicy | None = None


class Retry(ApiModel):
    """`retry`."""

    NOT_ACTED_ON = frozenset({"numAttemptsPerPriority"})

    num_retries: UInt32 | None = None
    retry_on: RetryOn | None = None
    per_retry: PerRetryPolicy | None = None


class HTTPTimeout(ApiModel):
    """`timeout.http`."""

    NOT_ACTED_ON = frozenset({"maxConnectionDuration", "maxStreamDuration", "streamIdleTimeout"})

    request_timeout: Duration | None = None
    connection_idle_timeout: Duration | None = None


class TCPTimeout(ApiModel):
    """`timeout.tcp`."""

    connect_timeout: Duration | None = None


class Timeout(ApiModel):
    """`timeout`."""

    http: HTTPTimeout | None = None
    tcp: TCPTimeout | None = None


class RateLimitValue(ApiModel):
    """`limit`: requests per unit."""

    NOT_ACTED_ON = frozenset({"fromMetadata"})

    requests: UInt32
    unit: Literal["Second", "Minute", "Hour", "Day", "Month", "Year"]


class RateLimitRule(ApiModel):
    """`rateLimit.local.rules[]`."""

    NOT_ACTED_ON = frozenset({"cost", "shadowMode", "shared", "xRateLimitHeaders"})

    client_selectors: list[dict[str, Any]] | None = None
    limit: RateLimitValue


class LocalRateLimit(ApiModel):
    """`rateLimit.local`."""

    rules: list[RateLimitRule] = Field(default_factory=list)


class RateLimit(ApiModel):
    """`rateLimit`: poolgate implements the Local type."""

    type: Literal["Global", "Local"]
    local: LocalRateLimit | None = None
    global_: dict[str, Any] | None = Field(default=None, alias="global")


class HTTPActiveHealthChecker(ApiModel):
    """`healthCheck.active.http`."""

    NOT_ACTED_ON = frozenset({"expectedResponse", "hostname", "requestBody", "retriableStatuses"})

    path: Annotated[str, Field(min_length=1)]
    method: str | None = None
    expected_statuses: list[Annotated[int, Field(ge=100, le=599)]] | None = None


class ActiveHealthCheck(ApiModel):
    """`healthCheck.active`."""

    NOT_ACTED_ON = frozenset({"healthCheckLog", "initialJitter", "overrides"})
    INERT = frozenset({"grpc", "tcp"})  # their types are reported as probed with HTTP

    type: Literal["HTTP", "TCP", "GRPC"]
    timeout: Duration | None = None
    interval: Duration | None = None
    unhealthy_threshold: UInt32 | None = None
    healthy_threshold: UInt32 | None = None
    http: HTTPActiveHealthChecker | None = None

    @model_validator(mode="after")
    def _http_config(self) -> ActiveHealthCheck:
        if self.type == "HTTP" and self.http is None:
            raise ValueError("type HTTP needs http.path")
        return self


class PassiveHealthCheck(ApiModel):
    """`healthCheck.passive` (outlier detection)."""

    NOT_ACTED_ON = frozenset({"alwaysEjectOneEndpoint", "failurePercentageThreshold"})

    split_external_local_origin_errors: bool | None = None
    interval: Duration | None = None
    consecutive_local_origin_failures: UInt32 | None = None
    consecutive_gateway_errors: UInt32 | None = None
    consecutive_5xx_errors: UInt32 | None = Field(default=None, alias="consecutive5XxErrors")
    base_ejection_time: Duration | None = None
    max_ejection_percent: Annotated[int, Field(ge=0, le=100)] | None = None


class HealthCheck(ApiModel):
    """`healthCheck`."""

    NOT_ACTED_ON = frozenset({"panicThreshold"})

    active: ActiveHealthCheck | None = None
    passive: PassiveHealthCheck | None = None


class BackendTrafficPolicySpec(PolicySpec):
    """BackendTrafficPolicy spec: the fields poolgate honours."""

    NOT_ACTED_ON = PolicySpec.NOT_ACTED_ON | {
        "admissionControl", "bandwidthLimit", "compression", "compressor", "connection", "dns",
        "faultInjection", "http2", "httpUpgrade", "loadBalancer", "mergeType", "proxyProtocol",
        "requestBuffer", "responseOverride", "routingType", "tcpKeepalive", "telemetry",
        "useClientProtocol",
    }

    circuit_breaker: CircuitBreaker | None = None
    retry: Retry | None = None
    timeout: Timeout | None = None
    rate_limit: RateLimit | None = None
    health_check: HealthCheck | None = None


class BackendTrafficPolicy(Resource):
    """How the gateway talks to the backends of a route or a whole Gateway."""

    KIND = "BackendTrafficPolicy"
    spec: BackendTrafficPolicySpec


class ClientHeaders(ApiModel):
    """`headers` of a ClientTrafficPolicy."""

    NOT_ACTED_ON = frozenset({
        "disableRateLimitHeaders", "earlyRequestHeaders", "host", "lateResponseHeaders",
        "maxRequestHeaderLimit", "preserveXRequestID", "requestID", "withUnderscoresAction",
        "xForwardedClientCert",
    })

    enable_envoy_headers: bool | None = None


class ClientTrafficPolicySpec(PolicySpec):
    """ClientTrafficPolicy spec."""

    NOT_ACTED_ON = PolicySpec.NOT_ACTED_ON | {
        "clientIPDetection", "connection", "enableProxyProtocol", "grpc", "healthCheck", "http1",
        "http2", "http3", "path", "proxyProtocol", "scheme", "tcpKeepalive", "timeout", "tls",
    }

    headers: ClientHeaders | None = None


class ClientTrafficPolicy(Resource):
    """How the gateway treats downstream clients; poolgate reads `headers.enableEnvoyHeaders`."""

    KIND = "ClientTrafficPolicy"
    spec: ClientTrafficPolicySpec


class EnvoyProxy(Resource):
    """Envoy deployment parameters; accepted so Gateway references resolve, otherwise unused."""

    KIND = "EnvoyProxy"
    spec: dict[str, Any] = Field(default_factory=dict)

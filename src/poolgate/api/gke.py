"""GKE resources for multi-cluster inference (seed 002): GCPBackendPolicy, HealthCheckPolicy,
AutoscalingMetric.

`GCPBackendPolicy` (`networking.gke.io/v1`) carries the balancing mode and the backend timeout,
`HealthCheckPolicy` (`networking.gke.io/v1`) the active health check, and `AutoscalingMetric`
(`autoscaling.gke.io/v1beta1`) says which model-server metric a `gke.named_metrics.<exportName>`
custom metric is.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from poolgate.api._base import ApiModel, Labels, Resource

GKE_NETWORKING_GROUP = "networking.gke.io"
GKE_AUTOSCALING_GROUP = "autoscaling.gke.io"

Percent = Annotated[int, Field(ge=0, le=100)]
Positive = Annotated[int, Field(ge=1)]


class GKEPolicyTargetReference(ApiModel):
    """`spec.targetRef`: the imported (or local) pool the policy applies to."""

    group: str = ""
    kind: str
    name: Annotated[str, Field(min_length=1)]
    namespace: str | None = None


class CustomMetric(ApiModel):
    """`spec.default.customMetrics[]`: one exported utilisation signal and its target.

    The seed writes `maxUtilization: 60`; the GKE field is `maxUtilizationPercent`. Both are read
    as an integer percentage (the build warns about the former).
    """

    name: Annotated[str, Field(min_length=1)]
    max_utilization_percent: Percent | None = None
    max_utilization: Percent | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _one_spelling(self) -> CustomMetric:
        if (self.max_utilization_percent is not None and self.max_utilization is not None
                and self.max_utilization_percent != self.max_utilization):
            raise ValueError("maxUtilization and maxUtilizationPercent disagree; set only "
                             "maxUtilizationPercent")
        return self

    @property
    def target_percent(self) -> int | None:
        """The utilisation target in percent, from either spelling."""
        if self.max_utilization_percent is not None:
            return self.max_utilization_percent
        return self.max_utilization


BalancingMode = Literal["CUSTOM_METRICS", "IN_FLIGHT"]
TrafficDuration = Literal["SHORT", "LONG"]


class BackendPolicyConfig(ApiModel):
    """`spec.default` of a GCPBackendPolicy."""

    # GKE fields are as of GoogleCloudPlatform/gke-gateway-api's CRDs in 2026-04.
    NOT_ACTED_ON = frozenset({
        "backendPreference", "connectionDraining", "iap", "logging", "maxRatePerEndpoint",
        "securityPolicy", "sessionAffinity",
    })

    timeout_sec: Annotated[int, Field(ge=1, le=2_147_483_647)] | None = None
    balancing_mode: BalancingMode | None = None
    custom_metrics: list[CustomMetric] | None = None
    max_in_flight_requests_per_endpoint: Positive | None = None
    traffic_duration: TrafficDuration | None = None
    dry_run: bool = False

    @model_validator(mode="after")
    def _exclusive_modes(self) -> BackendPolicyConfig:
        metrics = bool(self.custom_metrics)
        in_flight = self.max_in_flight_requests_per_endpoint is not None
        if metrics and in_flight:
            raise ValueError("customMetrics (CUSTOM_METRICS) and maxInFlightRequestsPerEndpoint "
                             "(IN_FLIGHT) exclude each other; configure one balancing mode")
        if self.balancing_mode == "CUSTOM_METRICS" and in_flight:
            raise ValueError("balancingMode CUSTOM_METRICS cannot use "
                             "maxInFlightRequestsPerEndpoint (that is IN_FLIGHT's setting)")
        if self.balancing_mode == "CUSTOM_METRICS" and not metrics:
            raise ValueError("balancingMode CUSTOM_METRICS needs customMetrics")
        if self.balancing_mode == "IN_FLIGHT" and metrics:
            raise ValueError("balancingMode IN_FLIGHT cannot use customMetrics (that is "
                             "CUSTOM_METRICS' setting)")
        if self.balancing_mode == "IN_FLIGHT" and not in_flight:
            raise ValueError("balancingMode IN_FLIGHT needs maxInFlightRequestsPerEndpoint")
        if self.balancing_mode is None and (metrics or in_flight):
            raise ValueError("set balancingMode (CUSTOM_METRICS or IN_FLIGHT) with "
                             + ("customMetrics" if metrics else "maxInFlightRequestsPerEndpoint"))
        return self


class GCPBackendPolicySpec(ApiModel):
    """GCPBackendPolicy spec."""

    target_ref: GKEPolicyTargetReference
    default: BackendPolicyConfig = Field(default_factory=BackendPolicyConfig)


class GCPBackendPolicy(Resource):
    """How GKE's load balancer treats a backend: balancing mode and backend timeout."""

    KIND = "GCPBackendPolicy"
    spec: GCPBackendPolicySpec


class HTTPHealthCheckConfig(ApiModel):
    """`config.httpHealthCheck`."""

    NOT_ACTED_ON = frozenset({"host", "portName", "portSpecification", "proxyHeader", "response"})

    request_path: Annotated[str, Field(min_length=1)] = "/"
    port: Annotated[int, Field(ge=1, le=65535)] | None = None


class HealthCheckConfig(ApiModel):
    """`spec.default.config`."""

    # Settings of the other check types; a type other than HTTP is reported as probed with HTTP.
    INERT = frozenset({"grpcHealthCheck", "http2HealthCheck", "httpsHealthCheck", "tcpHealthCheck"})

    type: Literal["HTTP", "HTTPS", "HTTP2", "TCP", "GRPC"] = "HTTP"
    http_health_check: HTTPHealthCheckConfig | None = None


class HealthCheckPolicyConfig(ApiModel):
    """`spec.default` of a HealthCheckPolicy (GCP health-check defaults: 5s, 5s, 2, 2)."""

    NOT_ACTED_ON = frozenset({"logConfig"})

    check_interval_sec: Annotated[int, Field(ge=1, le=300)] | None = None
    timeout_sec: Annotated[int, Field(ge=1, le=300)] | None = None
    healthy_threshold: Annotated[int, Field(ge=1, le=10)] | None = None
    unhealthy_threshold: Annotated[int, Field(ge=1, le=10)] | None = None
    config: HealthCheckConfig = Field(default_factory=HealthCheckConfig)

    @model_validator(mode="after")
    def _timeout_within_interval(self) -> HealthCheckPolicyConfig:
        if (self.timeout_sec is not None and self.check_interval_sec is not None
                and self.timeout_sec > self.check_interval_sec):
            raise ValueError("timeoutSec must not be longer than checkIntervalSec")
        return self


class HealthCheckPolicySpec(ApiModel):
    """HealthCheckPolicy spec."""

    target_ref: GKEPolicyTargetReference
    default: HealthCheckPolicyConfig = Field(default_factory=HealthCheckPolicyConfig)


class HealthCheckPolicy(Resource):
    """The active health check GKE's load balancer runs against a backend's endpoints."""

    KIND = "HealthCheckPolicy"
    spec: HealthCheckPolicySpec


class ExportedMetric(ApiModel):
    """`spec.endpoints[].metrics[]`: a model-server metric and the name it is exported as."""

    name: Annotated[str, Field(min_length=1)]
    export_name: Annotated[str, Field(min_length=1)]


class MetricEndpoint(ApiModel):
    """`spec.endpoints[]`: where the metrics are scraped."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    path: str = "/metrics"
    metrics: Annotated[list[ExportedMetric], Field(min_length=1)]


class MatchLabelsSelector(ApiModel):
    """`spec.selector`."""

    match_labels: Labels = Field(default_factory=dict)
    match_expressions: list[dict[str, Any]] | None = None


class AutoscalingMetricSpec(ApiModel):
    """AutoscalingMetric spec."""

    selector: MatchLabelsSelector = Field(default_factory=MatchLabelsSelector)
    endpoints: Annotated[list[MetricEndpoint], Field(min_length=1)]


class AutoscalingMetric(Resource):
    """Exports model-server metrics as `gke.named_metrics.<exportName>` custom metrics."""

    KIND = "AutoscalingMetric"
    spec: AutoscalingMetricSpec

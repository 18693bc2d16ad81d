"""BackendTrafficPolicy resources resolved into TrafficPolicy values with Envoy Gateway defaults."""

from __future__ import annotations

from typing import Any

from poolgate.api import envoy
from poolgate.api.loader import LoadedResource
from poolgate.config._report import Report
from poolgate.config.policy import HealthCheckSpec, TrafficPolicy
from poolgate.datalayer.health_spec import ActiveHealthCheckSpec
from poolgate.traffic.circuit_breaker import BreakerLimits
from poolgate.traffic.outlier import OutlierSpec
from poolgate.traffic.rate_limit import RateLimitRule
from poolgate.traffic.retry import DEFAULT_BACKOFF_BASE, RetrySpec, Trigger

UNIT_SECONDS = {
    "Second": 1.0, "Minute": 60.0, "Hour": 3600.0, "Day": 86400.0,
    "Month": 30 * 86400.0, "Year": 365 * 86400.0,
}


def circuit_breaker(cb: envoy.CircuitBreaker, report: Report,
                    about: LoadedResource) -> BreakerLimits | None:
    """`circuitBreaker` with Envoy's 1024 default for every unset threshold."""
    values = {
        "max_connections": cb.max_connections,
        "max_pending_requests": cb.max_pending_requests,
        "max_parallel_requests": cb.max_parallel_requests,
        "max_parallel_retries": cb.max_parallel_retries,
        "max_requests_per_connection": cb.max_requests_per_connection,
        "per_endpoint_max_connections": (cb.per_endpoint.max_connections
                                         if cb.per_endpoint is not None else None),
    }
    try:
        return BreakerLimits(**{k: v for k, v in values.items() if v is not None})
    except ValueError as e:
        report.error(about, f"spec.circuitBreaker: {e}")
        return None


def retry(r: envoy.Retry, report: Report, about: LoadedResource) -> RetrySpec | None:
    """`retry` with Envoy Gateway's defaults (2 retries; connect-failure, refused-stream,
    unavailable, cancelled and 503 when `retryOn` is absent)."""
    d = RetrySpec()
    triggers: frozenset[str] = frozenset(d.triggers)
    codes: frozenset[int] = d.http_status_codes
    if r.retry_on is not None:
        triggers = frozenset(r.retry_on.triggers or ())
        codes = frozenset(r.retry_on.http_status_codes or ())
        if codes:
            # Status codes only take effect with this trigger; Envoy Gateway adds it itself.
            triggers = triggers | {Trigger.RETRIABLE_STATUS_CODES.value}
        if not triggers:
            report.warning(about, "spec.retry.retryOn has no triggers and no httpStatusCodes: "
                                  "nothing will be retried")
    per = r.per_retry
    back_off = per.back_off if per is not None else None
    try:
        return RetrySpec(
            num_retries=d.num_retries if r.num_retries is None else r.num_retries,
            triggers=frozenset(Trigger(t) for t in triggers),
            http_status_codes=codes,
            per_retry_timeout=per.timeout if per is not None else None,
            backoff_base=(back_off.base_interval if back_off is not None
                          and back_off.base_interval is not None else DEFAULT_BACKOFF_BASE),
            backoff_max=back_off.max_interval if back_off is not None else None,
        )
    except ValueError as e:
        report.error(about, f"spec.retry: {e}")
        return None


def rate_limits(rl: envoy.RateLimit, report: Report, about: LoadedResource) -> tuple[RateLimitRule, ...]:
    """Local rate-limit rules; Global limits and per-client selectors are reported and skipped."""
    if rl.type == "Global":
        report.warning(about, "spec.rateLimit type Global needs an external rate-limit service; "
                              "poolgate supports type Local only, so this limit is ignored")
        return ()
    if rl.local is None:
        report.error(about, "spec.rateLimit type Local needs spec.rateLimit.local")
        return ()
    rules = []
    for i, rule in enumerate(rl.local.rules):
        if rule.client_selectors:
            report.warning(about, f"spec.rateLimit.local.rules[{i}].clientSelectors are not "
                                  "supported yet; this rule is ignored")
            continue
        rules.append(RateLimitRule(rule.limit.requests, UNIT_SECONDS[rule.limit.unit]))
    return tuple(rules)


def health_check(hc: envoy.HealthCheck, report: Report, about: LoadedResource) -> HealthCheckSpec:
    """`healthCheck` with Envoy Gateway's defaults filled in."""
    active = None
    if hc.active is not None:
        a, d = hc.active, ActiveHealthCheckSpec()
        if a.type != "HTTP":
            report.warning(about, f"spec.healthCheck.active type {a.type} is parsed but poolgate "
                                  "probes with HTTP only")
        active = ActiveHealthCheckSpec(
            type=a.type,
            path=a.http.path if a.http else None,
            method=(a.http.method if a.http and a.http.method else d.method),
            expected_statuses=(frozenset(a.http.expected_statuses)
                               if a.http and a.http.expected_statuses else d.expected_statuses),
            interval=d.interval if a.interval is None else a.interval,
            timeout=d.timeout if a.timeout is None else a.timeout,
            unhealthy_threshold=(d.unhealthy_threshold if a.unhealthy_threshold is None
                                 else a.unhealthy_threshold),
            healthy_threshold=(d.healthy_threshold if a.healthy_threshold is None
                               else a.healthy_threshold),
        )
    passive = None
    if hc.passive is not None:
        p = hc.passive
        values: dict[str, Any] = {
            "consecutive_5xx": p.consecutive_5xx_errors,
            "consecutive_gateway_failure": p.consecutive_gateway_errors,
            "consecutive_local_origin_failure": p.consecutive_local_origin_failures,
            "split_external_local_origin_errors": p.split_external_local_origin_errors,
            "interval": p.interval,
            "base_ejection_time": p.base_ejection_time,
            "max_ejection_percent": p.max_ejection_percent,
        }
        try:
            passive = OutlierSpec(**{k: v for k, v in values.items() if v is not None})
        except ValueError as e:
            report.error(about, f"spec.healthCheck.passive: {e}")
    return HealthCheckSpec(active, passive)


def traffic_policy(about: LoadedResource, report: Report) -> TrafficPolicy:
    """One BackendTrafficPolicy as a TrafficPolicy (fields it does not define were reported by the
    loader, as for every kind)."""
    res = about.resource
    assert isinstance(res, envoy.BackendTrafficPolicy)
    spec = res.spec
    timeout = spec.timeout
    http = timeout.http if timeout is not None else None
    tcp = timeout.tcp if timeout is not None else None
    return TrafficPolicy(
        namespace=res.namespace,
        name=res.name,
        circuit_breaker=(circuit_breaker(spec.circuit_breaker, report, about)
                         if spec.circuit_breaker else None),
        retry=retry(spec.retry, report, about) if spec.retry is not None else None,
        request_timeout=http.request_timeout if http is not None else None,
        rate_limits=rate_limits(spec.rate_limit, report, about) if spec.rate_limit else (),
        health_check=health_check(spec.health_check, report, about) if spec.health_check else None,
        connect_timeout=tcp.connect_timeout if tcp is not None else None,
        connection_idle_timeout=http.connection_idle_timeout if http is not None else None,
    )

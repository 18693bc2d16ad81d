"""BackendTrafficPolicy resources resolved into TrafficPolicy values with Envoy Gateway defaults."""

from __future__ import annotations

from poolgate.api import envoy
from poolgate.api.loader import LoadedResource
from poolgate.config._report import Report
from poolgate.config.policy import (
    DEFAULT_BACKOFF_BASE,
    DEFAULT_RETRY_STATUS_CODES,
    DEFAULT_RETRY_TRIGGERS,
    ActiveHealthCheckSpec,
    CircuitBreakerSpec,
    HealthCheckSpec,
    PassiveHealthCheckSpec,
    RateLimitRule,
    RetrySpec,
    TrafficPolicy,
)

UNIT_SECONDS = {
    "Second": 1.0, "Minute": 60.0, "Hour": 3600.0, "Day": 86400.0,
    "Month": 30 * 86400.0, "Year": 365 * 86400.0,
}


def circuit_breaker(cb: envoy.CircuitBreaker) -> CircuitBreakerSpec:
    """`circuitBreaker` with Envoy's 1024 default for every unset threshold."""
    d = CircuitBreakerSpec()
    return CircuitBreakerSpec(
        max_connections=d.max_connections if cb.max_connections is None else cb.max_connections,
        max_pending_requests=(d.max_pending_requests if cb.max_pending_requests is None
                              else cb.max_pending_requests),
        max_parallel_requests=(d.max_parallel_requests if cb.max_parallel_requests is None
                               else cb.max_parallel_requests),
        max_parallel_retries=(d.max_parallel_retries if cb.max_parallel_retries is None
                              else cb.max_parallel_retries),
        max_requests_per_connection=cb.max_requests_per_connection,
        per_endpoint_max_connections=cb.per_endpoint.max_connections if cb.per_endpoint else None,
    )


def retry(r: envoy.Retry, report: Report, about: LoadedResource) -> RetrySpec:
    """`retry` with Envoy Gateway's defaults (2 retries; connect-failure, refused-stream,
    unavailable, cancelled and 503 when `retryOn` is absent)."""
    if r.retry_on is None:
        triggers, codes = DEFAULT_RETRY_TRIGGERS, DEFAULT_RETRY_STATUS_CODES
    else:
        triggers = frozenset(r.retry_on.triggers or ())
        codes = frozenset(r.retry_on.http_status_codes or ())
        if codes:
            # Status codes only take effect with this trigger; Envoy Gateway adds it itself.
            triggers = triggers | {"retriable-status-codes"}
        if not triggers:
            report.warning(about, "spec.retry.retryOn has no triggers and no httpStatusCodes: "
                                  "nothing will be retried")
    per = r.per_retry
    base = DEFAULT_BACKOFF_BASE
    maximum: float | None = None
    if per is not None and per.back_off is not None:
        if per.back_off.base_interval is not None:
            base = per.back_off.base_interval
        maximum = per.back_off.max_interval
    if maximum is None:
        maximum = base * 10  # Envoy: max_interval defaults to 10x base_interval
    if maximum < base:
        report.error(about, "spec.retry.perRetry.backOff.maxInterval is shorter than baseInterval")
    return RetrySpec(
        num_retries=2 if r.num_retries is None else r.num_retries,
        triggers=triggers,
        http_status_codes=codes,
        per_retry_timeout=per.timeout if per is not None else None,
        backoff_base=base,
        backoff_max=maximum,
    )


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
        p, dp = hc.passive, PassiveHealthCheckSpec()
        passive = PassiveHealthCheckSpec(
            consecutive_5xx=dp.consecutive_5xx if p.consecutive_5xx_errors is None
            else p.consecutive_5xx_errors,
            consecutive_gateway_errors=dp.consecutive_gateway_errors
            if p.consecutive_gateway_errors is None else p.consecutive_gateway_errors,
            consecutive_local_origin_failures=dp.consecutive_local_origin_failures
            if p.consecutive_local_origin_failures is None else p.consecutive_local_origin_failures,
            split_external_local_origin_errors=bool(p.split_external_local_origin_errors),
            interval=dp.interval if p.interval is None else p.interval,
            base_ejection_time=dp.base_ejection_time if p.base_ejection_time is None
            else p.base_ejection_time,
            max_ejection_percent=dp.max_ejection_percent if p.max_ejection_percent is None
            else p.max_ejection_percent,
        )
    return HealthCheckSpec(active, passive)


def traffic_policy(about: LoadedResource, report: Report) -> TrafficPolicy:
    """One BackendTrafficPolicy as a TrafficPolicy."""
    res = about.resource
    assert isinstance(res, envoy.BackendTrafficPolicy)
    spec = res.spec
    timeout = spec.timeout
    http = timeout.http if timeout is not None else None
    tcp = timeout.tcp if timeout is not None else None
    return TrafficPolicy(
        namespace=res.namespace,
        name=res.name,
        circuit_breaker=circuit_breaker(spec.circuit_breaker) if spec.circuit_breaker else None,
        retry=retry(spec.retry, report, about) if spec.retry is not None else None,
        request_timeout=http.request_timeout if http is not None else None,
        rate_limits=rate_limits(spec.rate_limit, report, about) if spec.rate_limit else (),
        health_check=health_check(spec.health_check, report, about) if spec.health_check else None,
        connect_timeout=tcp.connect_timeout if tcp is not None else None,
        connection_idle_timeout=http.connection_idle_timeout if http is not None else None,
    )

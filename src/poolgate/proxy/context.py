"""What one request accumulates on its way through the stages (resolve, authenticate, admit,
attempt, outcome)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from poolgate.auth.credentials import redact_params
from poolgate.config.snapshot import Backend, RouteDecision
from poolgate.observability.meter import ResponseMeter
from poolgate.proxy.cluster import BackendCluster, Runtime
from poolgate.proxy.inference import InferenceRequest
from poolgate.proxy.responder import Responder
from poolgate.scheduling.interfaces import LLMRequest


@dataclass(slots=True)
class Attempt:
    """One upstream attempt: where it went and how it ended."""

    endpoint: str
    status: int | None = None  # the upstream's status, once its head arrived
    failure: str | None = None  # why it ended without a response (Envoy's reset reason)


@dataclass(slots=True)
class Outcome:
    """What the client got: filled as the request goes, read once by the access log and
    metrics. `status` 0 means "whatever was sent" (the responder's status)."""

    status: int = 0
    flag: str = "-"  # Envoy's response flag (UO, UF, UT, ...)
    bytes_sent: int | None = None
    ttfb: float | None = None  # seconds from arrival to the upstream's response head
    error: str | None = None


@dataclass(slots=True)
class RequestContext:
    """One request, typed: set by the stage that knows each part, read by the ones after."""

    request: Responder
    listener_port: int
    started: float  # loop time of arrival
    runtime: Runtime  # the configuration the request started with (kept across a reload)
    # resolve
    route: RouteDecision | None = None
    backend: Backend | None = None
    cluster: BackendCluster | None = None
    inference: InferenceRequest | None = None
    objective: str | None = None  # x-gateway-inference-objective
    priority: int | None = None
    llm: LLMRequest | None = None  # what the endpoint picker reads (pool backends)
    meter: ResponseMeter | None = None  # measures the response (pool backends; proxy/recording)
    path: str = ""  # upstream path after the rule's filters
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    transform: Callable[[bytes], bytes] | None = None  # rewrites a buffered 200 body
    # authenticate
    client_id: str | None = None  # who the SecurityPolicy authenticated (Secret key name, JWT sub)
    # admit
    deadline: float | None = None  # loop time the whole request must end by
    # attempt
    attempts: list[Attempt] = field(default_factory=list)
    # outcome
    outcome: Outcome = field(default_factory=Outcome)

    @property
    def route_key(self) -> str:
        """`namespace/name` of the matched HTTPRoute, or `-`."""
        return self.route.route.key if self.route is not None else "-"

    @property
    def model(self) -> str:
        """The model the client asked for, or `-`."""
        inference = self.inference
        if inference is None or inference.model is None:
            return "-"
        return inference.model

    def access_record(self, duration: float, route: str, model: str) -> dict[str, Any]:
        """The access-log line of this request (one JSON object); `route` and `model` as
        `route_key` and `model` give them."""
        request, outcome = self.request, self.outcome
        last = self.attempts[-1].endpoint if self.attempts else "-"
        path = request.raw_path
        cluster = self.cluster
        if cluster is not None and cluster.authenticator is not None \
                and cluster.authenticator.credential_params:
            path = redact_params(path, cluster.authenticator.credential_params)
        record: dict[str, Any] = {
            "method": request.method, "path": path, "route": route, "model": model,
            "endpoint": last,
            "status": outcome.status or request.status, "flag": outcome.flag,
            "attempts": len(self.attempts),
        }
        inference = self.inference
        if inference is not None and inference.target_model != inference.model \
                and inference.model is not None:
            record["target_model"] = inference.target_model
        if self.objective is not None:
            record["objective"] = self.objective
        if self.client_id is not None:
            record["client"] = self.client_id
        if outcome.error is not None:
            record["error"] = outcome.error
        if outcome.bytes_sent is not None:
            record["bytes"] = outcome.bytes_sent
        record["duration_ms"] = round(duration * 1000, 3)
        if outcome.ttfb is not None:
            record["ttfb_ms"] = round(outcome.ttfb * 1000, 3)
        return record

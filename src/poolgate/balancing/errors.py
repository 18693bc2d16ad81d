"""Errors the balancing step answers: every endpoint capped, the backend timeout (timeoutSec)."""

from __future__ import annotations

from poolgate.core.errors import BodyFormat, PoolgateError
from poolgate.traffic.errors import UpstreamTimeout


class InFlightCapReached(PoolgateError):
    """IN_FLIGHT: every endpoint of the pool, in every region, is at its in-flight cap."""

    status = 503
    type = "ServiceUnavailableError"
    code = "in_flight_limit"
    flag = "UO"

    def __init__(self, pool: str, cap: int) -> None:
        super().__init__(f"Every endpoint of {pool} already has {cap} requests in flight "
                         "(GCPBackendPolicy maxInFlightRequestsPerEndpoint); try again later.")


class BackendTimeout(UpstreamTimeout):
    """GCPBackendPolicy `timeoutSec` passed before the backend's response started."""

    body_format = BodyFormat.OPENAI_JSON

    def __init__(self, policy: str, seconds: float) -> None:
        super().__init__(f"The backend did not start answering within timeoutSec {seconds:g}s "
                         f"(GCPBackendPolicy {policy}).")

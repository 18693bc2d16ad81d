"""Error classes: statuses, Envoy flags and the exact local-reply bodies."""

from __future__ import annotations

import orjson
import pytest

from poolgate.core.errors import BodyFormat, LocalReply, PoolgateError
from poolgate.traffic.errors import (
    CircuitOverflow,
    NoHealthyEndpoint,
    QueueTimeout,
    RateLimited,
    UpstreamConnectError,
    UpstreamReset,
    UpstreamTimeout,
)

RESET = "upstream connect error or disconnect/reset before headers. "


@pytest.mark.parametrize(
    ("error", "status", "flag", "body"),
    [
        pytest.param(CircuitOverflow("max_parallel_requests"), 503, "UO",
                     RESET + "reset reason: overflow", id="overflow"),
        pytest.param(RateLimited(), 429, "RL", "local_rate_limited", id="rate-limited"),
        pytest.param(NoHealthyEndpoint(), 503, "UH", "no healthy upstream", id="no-healthy"),
        pytest.param(UpstreamConnectError(), 503, "UF", RESET + "reset reason: connection failure",
                     id="connect-failure"),
        pytest.param(UpstreamConnectError(retried=True), 503, "UF",
                     RESET + "retried and the latest reset reason: connection failure",
                     id="connect-failure-after-retries"),
        pytest.param(UpstreamTimeout(), 504, "UT", "upstream request timeout", id="timeout"),
        pytest.param(UpstreamReset(), 503, "UC", RESET + "reset reason: connection termination",
                     id="reset"),
    ],
)
def test_envoy_local_replies_are_plain_text_byte_for_byte(error: PoolgateError, status: int,
                                                          flag: str, body: str) -> None:
    assert error.body_format is BodyFormat.ENVOY_TEXT
    assert (error.status, error.flag, error.envoy_text) == (status, flag, body)
    assert error.reply() == LocalReply(status, "text/plain", body.encode())


def test_queue_timeout_uses_the_openai_error_shape() -> None:
    reply = QueueTimeout().reply()
    assert (reply.status, reply.content_type) == (503, "application/json")
    assert orjson.loads(reply.body) == {"error": {
        "message": "The request waited too long in the gateway's queue; try again later.",
        "type": "ServiceUnavailableError", "param": None, "code": "queue_timeout"}}
    assert QueueTimeout().envoy_text is None


def test_base_error_json_code_falls_back_to_the_status_like_vllm() -> None:
    body = orjson.loads(PoolgateError("boom").reply().body)
    assert body["error"]["code"] == 500 and body["error"]["message"] == "boom"


@pytest.mark.parametrize(
    ("error", "envoy_header"),
    [
        pytest.param(CircuitOverflow("max_pending_requests"), ("x-envoy-overloaded", "true"),
                     id="overloaded"),
        pytest.param(RateLimited(), ("x-envoy-ratelimited", "true"), id="ratelimited"),
    ],
)
def test_envoy_headers_only_when_enabled(error: PoolgateError,
                                         envoy_header: tuple[str, str]) -> None:
    assert error.reply().headers == ()
    assert error.reply(envoy_headers=True).headers == (envoy_header,)


def test_extra_headers_are_carried_into_the_reply() -> None:
    error = RateLimited(headers={"x-ratelimit-limit": "1"})
    assert error.reply().headers == (("x-ratelimit-limit", "1"),)


def test_overflow_keeps_the_limit_that_fired() -> None:
    assert CircuitOverflow("max_parallel_retries").reason == "max_parallel_retries"

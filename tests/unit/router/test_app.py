"""Validating /infer bodies and admitting requests through the Router (no sockets)."""

from __future__ import annotations

import asyncio

import pytest

from poolgate.router.app import InferRequest, Router, parse_infer_body
from poolgate.router.config import KVFailureMode, RouterConfig
from poolgate.router.errors import InvalidRequest, Overloaded, Unavailable
from poolgate.router.global_limit import GlobalLimit
from poolgate.router.metrics import RouterMetrics
from poolgate.state.kv_endpoints import KVEndpoint
from poolgate.state.leases import MemoryLeaseStore
from poolgate.traffic.concurrency import Overflow


def test_valid_body() -> None:
    assert parse_infer_body(b'{"prompt": "hi"}') == InferRequest("hi", None)
    assert parse_infer_body(b'{"prompt": "", "max_tokens": 5}') == InferRequest("", 5)


@pytest.mark.parametrize(
    ("raw", "fragment", "param"),
    [
        pytest.param(b'{"prompt": ', "not valid JSON", None, id="truncated"),
        pytest.param(b"", "not valid JSON", None, id="empty"),
        pytest.param(b'["hi"]', "JSON object", None, id="array"),
        pytest.param(b"{}", "'prompt' is required", "prompt", id="missing"),
        pytest.param(b'{"prompt": null}', "must be a string, got NoneType", "prompt", id="null"),
        pytest.param(b'{"prompt": ["a"]}', "must be a string, got list", "prompt", id="list"),
        pytest.param(b'{"prompt": "a", "max_tokens": 0}', "positive integer", "max_tokens", id="mt-zero"),
        pytest.param(b'{"prompt": "a", "max_tokens": true}', "positive integer", "max_tokens", id="mt-bool"),
    ],
)
def test_invalid_bodies(raw: bytes, fragment: str, param: str | None) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_infer_body(raw)
    assert fragment in info.value.message
    assert info.value.param == param
    assert info.value.status == 400


def make_router(overflow: Overflow = Overflow.QUEUE, limit: int = 2, queue: int = 10,
                queue_timeout_ms: int = 5000, global_limit: int | None = None) -> Router:
    config = RouterConfig(model_ref="m", max_concurrency=limit, overflow=overflow, max_queue=queue,
                          queue_timeout_ms=queue_timeout_ms, simulated_latency_ms=20,
                          router_pod="pod-0", kv_endpoints=(KVEndpoint("kv", 6379),))
    metrics = RouterMetrics()
    gl = None
    if global_limit is not None:
        gl = GlobalLimit(MemoryLeaseStore(), config.kv_key, global_limit, 1000, KVFailureMode.OPEN,
                         metrics, "pod-0")
    return Router(config, metrics, gl, None)


async def test_response_has_the_seed_shape() -> None:
    body = await make_router().infer(InferRequest("hello", None))
    assert set(body) == {"modelRef", "prompt", "routerPod", "kvEndpoints", "processingMs"}
    assert body["modelRef"] == "m"
    assert body["prompt"] == "hello"
    assert body["routerPod"] == "pod-0"
    assert body["kvEndpoints"] == ["kv:6379"]
    assert isinstance(body["processingMs"], int)
    assert body["processingMs"] >= 15


async def test_queue_mode_serves_all_with_at_most_the_limit_in_flight() -> None:
    router = make_router()
    results = await asyncio.gather(*(router.infer(InferRequest(str(i), None)) for i in range(5)))
    assert [r["prompt"] for r in results] == [str(i) for i in range(5)]
    assert router.peak == 2
    assert (router.processing, router.queued) == (0, 0)


async def test_reject_mode_answers_429_with_retry_after() -> None:
    router = make_router(overflow=Overflow.REJECT)
    results = await asyncio.gather(*(router.infer(InferRequest("x", None)) for _ in range(5)),
                                   return_exceptions=True)
    rejected = [r for r in results if isinstance(r, Overloaded)]
    assert len(rejected) == 3
    assert rejected[0].headers["Retry-After"] == "1"
    assert rejected[0].reason == "concurrency_limit"


async def test_queue_timeout_is_503() -> None:
    router = make_router(limit=1, queue_timeout_ms=5)
    results = await asyncio.gather(*(router.infer(InferRequest("x", None)) for _ in range(2)),
                                   return_exceptions=True)
    assert isinstance(results[1], Unavailable)
    assert results[1].reason == "queue_timeout"


async def test_global_limit_below_local_limit_bounds_processing() -> None:
    router = make_router(limit=4, global_limit=1)
    await asyncio.gather(*(router.infer(InferRequest("x", None)) for _ in range(3)))
    assert router.peak == 1
    assert router.global_limit is not None and not router.global_limit.held


async def test_global_limit_in_reject_mode_is_429() -> None:
    router = make_router(overflow=Overflow.REJECT, limit=4, global_limit=1)
    results = await asyncio.gather(*(router.infer(InferRequest("x", None)) for _ in range(2)),
                                   return_exceptions=True)
    assert isinstance(results[1], Overloaded)
    assert results[1].reason == "global_limit"


async def test_draining_router_is_not_ready() -> None:
    router = make_router()
    assert router.readiness() == (True, "ready")
    router.draining = True
    assert router.readiness() == (False, "shutting down")

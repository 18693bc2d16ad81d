"""Reading the router's configuration from environment variables."""

from __future__ import annotations

import pytest

from poolgate.router.config import ConfigError, KVFailureMode, load_config
from poolgate.state.kv_endpoints import KVEndpoint
from poolgate.traffic.concurrency import Overflow

BASE = {"MODEL_REF": "llama-3-8b"}


def test_defaults() -> None:
    c = load_config(BASE)
    assert (c.model_ref, c.max_concurrency, c.kv_endpoints, c.overflow) == (
        "llama-3-8b", 10, (), Overflow.QUEUE)
    assert (c.max_queue, c.queue_timeout_ms, c.port, c.simulated_latency_ms) == (100, 30_000, 8080, 50)
    assert (c.global_max_concurrency, c.kv_failure_mode, c.kv_lease_ms) == (None, KVFailureMode.OPEN, 10_000)
    assert c.backend_url is None
    assert c.router_pod is None
    assert c.kv_key == "poolgate:router:llama-3-8b"
    assert c.max_body_bytes == 1 << 20


def test_everything_set() -> None:
    c = load_config({
        **BASE, "MAX_CONCURRENCY": " 3 ", "KV_ENDPOINTS": "redis-0:6379, ,redis-1:6379,",
        "OVERFLOW": "REJECT", "MAX_QUEUE": "0", "QUEUE_TIMEOUT_MS": "250", "PORT": "9000",
        "SIMULATED_LATENCY_MS": "0", "BACKEND_URL": "http://gateway:8080/", "POD_NAME": "r-1",
        "HOSTNAME": "ignored", "GLOBAL_MAX_CONCURRENCY": "20", "KV_FAILURE_MODE": "closed",
        "KV_LEASE_MS": "1000", "KV_KEY_PREFIX": "isvc:default/llama", "LOG_LEVEL": "debug",
        "MAX_BODY_BYTES": "4096",
    })
    assert c.max_body_bytes == 4096
    assert c.max_concurrency == 3
    assert c.kv_endpoints == (KVEndpoint("redis-0", 6379), KVEndpoint("redis-1", 6379))
    assert c.overflow is Overflow.REJECT
    assert (c.max_queue, c.queue_timeout_ms, c.port, c.simulated_latency_ms) == (0, 250, 9000, 0)
    assert c.backend_url == "http://gateway:8080"
    assert c.router_pod == "r-1"
    assert (c.global_max_concurrency, c.kv_failure_mode, c.kv_lease_ms) == (20, KVFailureMode.CLOSED, 1000)
    assert c.kv_key == "isvc:default/llama:llama-3-8b"
    assert c.log_level == "DEBUG"


def test_router_pod_falls_back_to_hostname() -> None:
    assert load_config({**BASE, "HOSTNAME": "router-abc"}).router_pod == "router-abc"


@pytest.mark.parametrize(
    ("env", "variable", "fragment"),
    [
        pytest.param({}, "MODEL_REF", "is required", id="model-missing"),
        pytest.param({"MODEL_REF": "  "}, "MODEL_REF", "is required", id="model-blank"),
        pytest.param({"MAX_CONCURRENCY": "ten"}, "MAX_CONCURRENCY", "not an integer", id="mc-text"),
        pytest.param({"MAX_CONCURRENCY": "2.5"}, "MAX_CONCURRENCY", "not an integer", id="mc-float"),
        pytest.param({"MAX_CONCURRENCY": "0"}, "MAX_CONCURRENCY", ">= 1", id="mc-zero"),
        pytest.param({"MAX_CONCURRENCY": "-4"}, "MAX_CONCURRENCY", ">= 1", id="mc-negative"),
        pytest.param({"KV_ENDPOINTS": "redis"}, "KV_ENDPOINTS", "host:port", id="kv-no-port"),
        pytest.param({"KV_ENDPOINTS": "a:1,b:99999"}, "KV_ENDPOINTS", "1-65535", id="kv-bad-port"),
        pytest.param({"OVERFLOW": "drop"}, "OVERFLOW", "'queue' or 'reject'", id="overflow"),
        pytest.param({"MAX_QUEUE": "-1"}, "MAX_QUEUE", ">= 0", id="max-queue"),
        pytest.param({"MAX_BODY_BYTES": "0"}, "MAX_BODY_BYTES", ">= 1", id="max-body-zero"),
        pytest.param({"MAX_BODY_BYTES": "1MiB"}, "MAX_BODY_BYTES", "not an integer", id="max-body-unit"),
        pytest.param({"QUEUE_TIMEOUT_MS": "0"}, "QUEUE_TIMEOUT_MS", ">= 1", id="queue-timeout"),
        pytest.param({"PORT": "70000"}, "PORT", "<= 65535", id="port"),
        pytest.param({"SIMULATED_LATENCY_MS": "x"}, "SIMULATED_LATENCY_MS", "integer", id="latency"),
        pytest.param({"BACKEND_URL": "gateway:8080"}, "BACKEND_URL", "http(s) URL", id="backend-scheme"),
        pytest.param({"BACKEND_URL": "http://g:bad"}, "BACKEND_URL", "invalid port", id="backend-port"),
        pytest.param({"GLOBAL_MAX_CONCURRENCY": "5"}, "GLOBAL_MAX_CONCURRENCY", "needs KV_ENDPOINTS",
                     id="global-without-kv"),
        pytest.param({"GLOBAL_MAX_CONCURRENCY": "0", "KV_ENDPOINTS": "r:1"}, "GLOBAL_MAX_CONCURRENCY",
                     ">= 1", id="global-zero"),
        pytest.param({"KV_FAILURE_MODE": "maybe"}, "KV_FAILURE_MODE", "'open' or 'closed'", id="kv-mode"),
        pytest.param({"KV_LEASE_MS": "10"}, "KV_LEASE_MS", ">= 100", id="lease-too-short"),
        pytest.param({"LOG_LEVEL": "loud"}, "LOG_LEVEL", "not one of", id="log-level"),
    ],
)
def test_bad_values_name_the_variable(env: dict[str, str], variable: str, fragment: str) -> None:
    full = {**BASE, **env} if "MODEL_REF" not in env and variable != "MODEL_REF" else env
    with pytest.raises(ConfigError) as info:
        load_config(full)
    assert info.value.variable == variable
    assert fragment in str(info.value)
    assert str(info.value).startswith(f"{variable}: ")

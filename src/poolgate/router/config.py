"""The router's configuration: read once from environment variables, validated, immutable."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from poolgate.auth.api_keys import ApiKeyTable
from poolgate.auth.key_file import KeyFileError, load_key_file
from poolgate.state.kv_endpoints import KVEndpoint, parse_kv_endpoints
from poolgate.traffic.concurrency import Overflow

E = TypeVar("E", bound=enum.Enum)


class KVFailureMode(enum.Enum):
    """What the global limit does when its Redis node cannot be reached."""

    OPEN = "open"  # admit (local limit still applies), warn, count
    CLOSED = "closed"  # refuse with 503


class ConfigError(Exception):
    """An environment variable is missing or invalid; `variable` names it."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


@dataclass(frozen=True, slots=True)
class RouterConfig:
    """Everything `poolgate router` reads from its environment (see docs/router.md)."""

    model_ref: str
    max_concurrency: int = 10
    kv_endpoints: tuple[KVEndpoint, ...] = ()
    overflow: Overflow = Overflow.QUEUE
    max_queue: int = 100
    queue_timeout_ms: int = 30_000
    host: str = "0.0.0.0"
    port: int = 8080
    simulated_latency_ms: int = 50
    max_body_bytes: int = 1 << 20
    router_pod: str | None = None
    backend_url: str | None = None
    backend_timeout_ms: int = 60_000
    backend_health_interval_ms: int = 5_000
    global_max_concurrency: int | None = None
    kv_failure_mode: KVFailureMode = KVFailureMode.OPEN
    kv_lease_ms: int = 10_000
    kv_timeout_ms: int = 500
    kv_key_prefix: str = "poolgate:router"
    log_level: str = "INFO"
    api_keys: ApiKeyTable | None = None  # API_KEYS_FILE: /infer needs one of these keys

    @property
    def kv_key(self) -> str:
        """The Redis key holding this model's global leases."""
        return f"{self.kv_key_prefix}:{self.model_ref}"


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def _int(env: Mapping[str, str], name: str, default: int, minimum: int,
         maximum: int | None = None) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw, 10)
    except ValueError:
        raise ConfigError(name, f"{raw!r} is not an integer") from None
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be <= {maximum}, got {value}")
    return value


def _choice(env: Mapping[str, str], name: str, enum_type: type[E], default: E) -> E:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    for member in enum_type:
        if member.value == raw:
            return member
    allowed = " or ".join(repr(m.value) for m in enum_type)
    raise ConfigError(name, f"{raw!r} is not one of {allowed}")


def _backend_url(env: Mapping[str, str]) -> str | None:
    raw = env.get("BACKEND_URL", "").strip()
    if not raw:
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError("BACKEND_URL", f"{raw!r} is not an http(s) URL such as http://gateway:8080")
    try:
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ConfigError("BACKEND_URL", f"{raw!r} has an invalid port") from None
    if parts.query or parts.fragment:
        raise ConfigError("BACKEND_URL", f"{raw!r} must not carry a query or fragment")
    return raw.rstrip("/")


def _api_keys(env: Mapping[str, str]) -> ApiKeyTable | None:
    raw = env.get("API_KEYS_FILE", "").strip()
    if not raw:
        return None
    try:
        return load_key_file(Path(raw))
    except KeyFileError as exc:
        raise ConfigError("API_KEYS_FILE", str(exc)) from None


def load_config(env: Mapping[str, str]) -> RouterConfig:
    """Build a `RouterConfig` from `env`; raises `ConfigError` naming the first bad variable."""
    model_ref = env.get("MODEL_REF", "").strip()
    if not model_ref:
        raise ConfigError("MODEL_REF", "is required (the model this router serves, e.g. llama-3-8b)")
    try:
        kv_endpoints = parse_kv_endpoints(env.get("KV_ENDPOINTS", ""))
    except ValueError as exc:
        raise ConfigError("KV_ENDPOINTS", str(exc)) from None
    global_raw = env.get("GLOBAL_MAX_CONCURRENCY", "").strip()
    global_max = _int(env, "GLOBAL_MAX_CONCURRENCY", 0, 1) if global_raw else None
    if global_max is not None and not kv_endpoints:
        raise ConfigError("GLOBAL_MAX_CONCURRENCY",
                          "needs KV_ENDPOINTS (the Redis nodes that hold the shared count)")
    log_level = env.get("LOG_LEVEL", "").strip().upper() or "INFO"
    if log_level not in _LOG_LEVELS:
        raise ConfigError("LOG_LEVEL", f"{log_level!r} is not one of {', '.join(_LOG_LEVELS)}")
    router_pod = env.get("POD_NAME", "").strip() or env.get("HOSTNAME", "").strip() or None
    lease_ms = _int(env, "KV_LEASE_MS", 10_000, 100)
    return RouterConfig(
        model_ref=model_ref,
        max_concurrency=_int(env, "MAX_CONCURRENCY", 10, 1),
        kv_endpoints=kv_endpoints,
        overflow=_choice(env, "OVERFLOW", Overflow, Overflow.QUEUE),
        max_queue=_int(env, "MAX_QUEUE", 100, 0),
        queue_timeout_ms=_int(env, "QUEUE_TIMEOUT_MS", 30_000, 1),
        host=env.get("HOST", "").strip() or "0.0.0.0",
        port=_int(env, "PORT", 8080, 1, 65535),
        simulated_latency_ms=_int(env, "SIMULATED_LATENCY_MS", 50, 0),
        max_body_bytes=_int(env, "MAX_BODY_BYTES", 1 << 20, 1),
        router_pod=router_pod,
        backend_url=_backend_url(env),
        backend_timeout_ms=_int(env, "BACKEND_TIMEOUT_MS", 60_000, 1),
        backend_health_interval_ms=_int(env, "BACKEND_HEALTH_INTERVAL_MS", 5_000, 10),
        global_max_concurrency=global_max,
        kv_failure_mode=_choice(env, "KV_FAILURE_MODE", KVFailureMode, KVFailureMode.OPEN),
        kv_lease_ms=lease_ms,
        kv_timeout_ms=_int(env, "KV_TIMEOUT_MS", 500, 1),
        kv_key_prefix=env.get("KV_KEY_PREFIX", "").strip() or "poolgate:router",
        log_level=log_level,
        api_keys=_api_keys(env),
    )

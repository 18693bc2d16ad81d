"""The InferenceService resource (poolgate.dev/v1alpha1): its spec, validated with pydantic."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from poolgate import __version__
from poolgate.api.validation_text import describe_validation_error
from poolgate.state.kv_endpoints import parse_kv_endpoint

GROUP = "poolgate.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
DEFAULT_IMAGE = f"ghcr.io/poolgate/poolgate:{__version__}"


class InvalidSpec(Exception):
    """An InferenceService whose spec cannot be rendered; the message goes to its status."""


class ResourceRequirements(BaseModel):
    """Container resources, as in a Pod spec (quantities kept as given)."""

    model_config = ConfigDict(extra="forbid")

    requests: dict[str, str | int] = Field(default_factory=dict)
    limits: dict[str, str | int] = Field(default_factory=dict)


class InferenceServiceSpec(BaseModel):
    """`spec` of an InferenceService: what the router Deployment is rendered from."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              frozen=True)

    model_ref: str = Field(min_length=1)
    max_concurrency: int = Field(10, ge=1)
    kv_endpoints: list[str] = Field(default_factory=list)
    replicas: int = Field(1, ge=0)
    image: str = Field(DEFAULT_IMAGE, min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] | None = None
    overflow: Literal["queue", "reject"] = "queue"
    max_queue: int | None = Field(None, ge=0)
    queue_timeout_ms: int | None = Field(None, ge=1)
    backend_url: str | None = None
    simulated_latency_ms: int | None = Field(None, ge=0)
    global_max_concurrency: int | None = Field(None, ge=1)
    kv_failure_mode: Literal["open", "closed"] | None = None
    kv_lease_ms: int | None = Field(None, ge=100)
    port: int = Field(8080, ge=1, le=65535)
    resources: ResourceRequirements | None = None

    @field_validator("kv_endpoints")
    @classmethod
    def _endpoints_are_host_port(cls, value: list[str]) -> list[str]:
        cleaned = [item.strip() for item in value if item.strip()]
        for item in cleaned:
            parse_kv_endpoint(item)
        return cleaned

    @field_validator("backend_url")
    @classmethod
    def _backend_is_http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"{value!r} is not an http(s) URL")
        return value


def parse_spec(obj: dict[str, Any]) -> InferenceServiceSpec:
    """Validate `obj["spec"]`; raises `InvalidSpec` with every problem, field by field."""
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        raise InvalidSpec("spec is missing")
    try:
        parsed = InferenceServiceSpec.model_validate(spec)
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc, root="spec")) from None
    if parsed.global_max_concurrency is not None and not parsed.kv_endpoints:
        raise InvalidSpec("spec.globalMaxConcurrency needs spec.kvEndpoints")
    return parsed

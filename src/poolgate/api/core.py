"""Core Kubernetes kinds poolgate reads only when a resource references them: `Secret` (API keys)
and `ConfigMap` (a JWKS). Documents of these kinds are held aside by the loader and validated
when referenced; the others stay skipped, whatever they hold."""

from __future__ import annotations

from pydantic import Field

from poolgate.api._base import Resource


class Secret(Resource):
    """A core v1 Secret: `data` (base64) and `stringData` (plain, wins over `data`)."""

    KIND = "Secret"
    INERT = Resource.INERT | {"type", "immutable"}

    data: dict[str, str] = Field(default_factory=dict)
    string_data: dict[str, str] = Field(default_factory=dict)


class ConfigMap(Resource):
    """A core v1 ConfigMap: `data` (text); `binaryData` is not read."""

    KIND = "ConfigMap"
    INERT = Resource.INERT | {"immutable"}
    NOT_ACTED_ON = frozenset({"binaryData"})

    data: dict[str, str] = Field(default_factory=dict)

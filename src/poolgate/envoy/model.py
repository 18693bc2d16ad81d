"""What a rendering takes and gives: options, the untranslated list, Envoy value helpers."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

Config = dict[str, Any]


# How the response body reaches the picker (`--response-body-mode`): as the Inference Extension
# sets it up (every chunk, handed back), chunk by chunk for the picker to see and let through
# (and the picker may skip a body it does not need), or not at all (4 messages a request).
RESPONSE_BODY_MODES = ("FULL_DUPLEX_STREAMED", "STREAMED", "NONE")
EPP_CLUSTER = "poolgate-epp"


@dataclass(frozen=True, slots=True)
class EnvoyOptions:
    """Where Envoy listens and where `poolgate epp` is (`poolgate envoy-config` flags)."""

    epp_host: str = "127.0.0.1"
    epp_port: int = 9002
    admin_port: int = 9901
    admin_host: str = "127.0.0.1"
    listen_host: str = "0.0.0.0"
    # Declared listener port -> the port Envoy binds (`--port-map`; `--port` for a single one).
    port_map: Mapping[int, int] = field(default_factory=lambda: MappingProxyType({}))
    port: int | None = None
    connect_timeout: float = 10.0  # as `poolgate serve --connect-timeout` (and Envoy Gateway)
    response_body_mode: str = "FULL_DUPLEX_STREAMED"

    def __post_init__(self) -> None:
        if self.response_body_mode not in RESPONSE_BODY_MODES:
            raise ValueError(f"response body mode {self.response_body_mode!r}: choose one of "
                             f"{', '.join(RESPONSE_BODY_MODES)}")

    def bound_port(self, declared: int) -> int:
        """The port Envoy listens on for a Gateway listener port."""
        found = self.port_map.get(declared)
        if found is not None:
            return found
        return self.port if self.port is not None else declared


@dataclass(frozen=True, slots=True)
class Untranslated:
    """One thing the bootstrap does not carry: the object, the field (or kind), and why."""

    subject: str  # "SecurityPolicy default/api-keys", "HTTPRoute default/r rule 0"
    field: str  # "spec.apiKeyAuth", or "" for the whole object
    why: str

    def __str__(self) -> str:
        where = f"{self.subject} {self.field}" if self.field else self.subject
        return f"{where}: {self.why}"


@dataclass(slots=True)
class Notes:
    """The untranslated list of one rendering, each entry once, in the order found."""

    entries: list[Untranslated] = field(default_factory=list)

    def add(self, subject: str, field_: str, why: str) -> None:
        """Record an untranslated object or field (repeats are ignored)."""
        entry = Untranslated(subject, field_, why)
        if entry not in self.entries:
            self.entries.append(entry)


def duration(seconds: float) -> str:
    """An Envoy duration string (`0.025s`, `10s`) for a number of seconds."""
    text = f"{seconds:.9f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def typed(type_name: str, **fields: Any) -> Config:
    """A `typed_config` Any of an Envoy API message, `type_name` without the URL prefix."""
    return {"@type": f"type.googleapis.com/{type_name}", **fields}


def socket_address(host: str, port: int) -> Config:
    """`address: {socket_address: ...}` of a host (IP or name) and port."""
    return {"socket_address": {"address": host.strip("[]"), "port_value": port}}


def percent(value: float = 100.0) -> Config:
    """A `Percent`."""
    return {"value": value}

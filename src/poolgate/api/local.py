"""`LocalEndpoints` (`poolgate.dev/v1alpha1`): the model servers behind a label set, outside a cluster."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator

from poolgate.api._base import ApiModel, Labels, Resource

GROUP = "poolgate.dev"

_HOST = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9.]*[A-Za-z0-9])?$")


def parse_address(text: str) -> tuple[str, int | None]:
    """`host`, `host:port` or `[v6]:port` as (host, port or None); ValueError when malformed."""
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"address {text!r}: missing ']' after an IPv6 address")
        host, rest = text[1:end], text[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(f"address {text!r}: expected ':PORT' after ']'")
        port_text = rest[1:]
        if ":" not in host:
            raise ValueError(f"address {text!r}: brackets are only for IPv6 addresses")
    elif ":" in text:
        host, _, port_text = text.rpartition(":")
        if ":" in host:
            raise ValueError(f"address {text!r}: write IPv6 addresses as [ADDR]:PORT")
    if not host or (":" not in host and not _HOST.match(host)):
        raise ValueError(f"address {text!r}: invalid host name")
    if port_text == "" and (text.endswith(":")):
        raise ValueError(f"address {text!r}: empty port")
    if port_text == "":
        return host, None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"address {text!r}: port must be a number from 1 to 65535")
    return host, int(port_text)


def _check_address(text: str) -> str:
    parse_address(text)
    return text


Address = Annotated[str, Field(min_length=1), AfterValidator(_check_address)]


class LocalAddress(ApiModel):
    """One address with its own placement and extra labels."""

    address: Address
    cluster: str | None = None
    region: str | None = None
    labels: Labels = Field(default_factory=dict)


class LocalEndpointsSpec(ApiModel):
    """LocalEndpoints spec."""

    labels: Annotated[Labels, Field(min_length=1)]
    addresses: Annotated[list[LocalAddress], Field(min_length=1)]
    cluster: str | None = None
    region: str | None = None

    @field_validator("addresses", mode="before")
    @classmethod
    def _plain_strings(cls, value: object) -> object:
        # A plain "host:port" string is shorthand for {address: "host:port"}.
        if isinstance(value, list):
            return [{"address": v} if isinstance(v, str) else v for v in value]
        return value


class LocalEndpoints(Resource):
    """Declares the pods behind a label set: what an InferencePool selector matches locally."""

    KIND = "LocalEndpoints"
    spec: LocalEndpointsSpec

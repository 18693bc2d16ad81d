"""Gateway API resources (`gateway.networking.k8s.io`): GatewayClass, Gateway, HTTPRoute, ReferenceGrant."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from poolgate.api._base import ApiModel, Resource
from poolgate.api.durations import Duration

Port = Annotated[int, Field(ge=1, le=65535)]
HTTPMethod = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class GatewayClassSpec(ApiModel):
    """GatewayClass spec; only the controller name is read (for the summary)."""

    # Gateway API fields are as of its experimental channel CRDs in 2026-08.
    INERT = frozenset({"description", "parametersRef"})

    controller_name: str


class GatewayClass(Resource):
    """A class of Gateways; poolgate accepts any controller name."""

    KIND = "GatewayClass"
    spec: GatewayClassSpec


class ParametersReference(ApiModel):
    """`infrastructure.parametersRef`: points at an EnvoyProxy."""

    group: str
    kind: str
    name: str
    namespace: str | None = None


class GatewayInfrastructure(ApiModel):
    """`spec.infrastructure`."""

    INERT = frozenset({"annotations", "labels"})

    parameters_ref: ParametersReference | None = None


class RouteNamespaces(ApiModel):
    """`allowedRoutes.namespaces`: which namespaces' routes may attach."""

    from_: Literal["All", "Same", "Selector"] = Field(default="Same", alias="from")
    selector: dict[str, object] | None = None


class RouteGroupKind(ApiModel):
    """`allowedRoutes.kinds[]`."""

    group: str = "gateway.networking.k8s.io"
    kind: str


class AllowedRoutes(ApiModel):
    """`listeners[].allowedRoutes`."""

    namespaces: RouteNamespaces = Field(default_factory=RouteNamespaces)
    kinds: list[RouteGroupKind] | None = None


class GatewayListener(ApiModel):
    """`spec.listeners[]`."""

    INERT = frozenset({"tls"})  # only for HTTPS/TLS listeners, which are reported as not served

    name: Annotated[str, Field(min_length=1)]
    port: Port
    protocol: str
    hostname: str | None = None
    allowed_routes: AllowedRoutes = Field(default_factory=AllowedRoutes)


class GatewaySpec(ApiModel):
    """Gateway spec."""

    NOT_ACTED_ON = frozenset({"tls"})
    INERT = frozenset({"addresses", "allowedListeners", "defaultScope"})

    gateway_class_name: str
    listeners: Annotated[list[GatewayListener], Field(min_length=1)]
    infrastructure: GatewayInfrastructure | None = None


class Gateway(Resource):
    """A Gateway: the listeners poolgate serves."""

    KIND = "Gateway"
    spec: GatewaySpec


class ParentReference(ApiModel):
    """`spec.parentRefs[]` of a route."""

    group: str = "gateway.networking.k8s.io"
    kind: str = "Gateway"
    namespace: str | None = None
    name: str
    section_name: str | None = None
    port: Port | None = None


class HTTPPathMatch(ApiModel):
    """`matches[].path`."""

    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"

    @model_validator(mode="after")
    def _absolute(self) -> HTTPPathMatch:
        if self.type != "RegularExpression" and not self.value.startswith("/"):
            raise ValueError(f"path value {self.value!r} must start with '/'")
        return self


class HTTPHeaderMatch(ApiModel):
    """`matches[].headers[]`."""

    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[str, Field(min_length=1)]
    value: str


class HTTPQueryParamMatch(ApiModel):
    """`matches[].queryParams[]`."""

    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: Annotated[str, Field(min_length=1)]
    value: str


class HTTPRouteMatch(ApiModel):
    """One `matches[]` entry; every condition in it must hold."""

    path: HTTPPathMatch = Field(default_factory=HTTPPathMatch)
    headers: list[HTTPHeaderMatch] = Field(default_factory=list)
    query_params: list[HTTPQueryParamMatch] = Field(default_factory=list)
    method: HTTPMethod | None = None


class HTTPHeader(ApiModel):
    """A header name and value."""

    name: Annotated[str, Field(min_length=1)]
    value: str


class HTTPHeaderFilter(ApiModel):
    """`RequestHeaderModifier`: set, add and remove request headers."""

    set: list[HTTPHeader] = Field(default_factory=list)
    add: list[HTTPHeader] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class HTTPPathModifier(ApiModel):
    """`URLRewrite.path`."""

    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None

    @model_validator(mode="after")
    def _value_for_type(self) -> HTTPPathModifier:
        if self.type == "ReplaceFullPath" and self.replace_full_path is None:
            raise ValueError("type ReplaceFullPath needs replaceFullPath")
        if self.type == "ReplacePrefixMatch" and self.replace_prefix_match is None:
            raise ValueError("type ReplacePrefixMatch needs replacePrefixMatch")
        return self


class HTTPURLRewriteFilter(ApiModel):
    """`URLRewrite`: hostname and path rewrite."""

    hostname: str | None = None
    path: HTTPPathModifier | None = None


class HTTPRouteFilter(ApiModel):
    """`filters[]`; poolgate acts on RequestHeaderModifier and URLRewrite."""

    # The settings of the filter types poolgate does not run; the type itself is reported.
    INERT = frozenset({
        "cors", "extensionRef", "externalAuth", "requestMirror", "requestRedirect",
        "responseHeaderModifier",
    })

    type: str
    request_header_modifier: HTTPHeaderFilter | None = None
    url_rewrite: HTTPURLRewriteFilter | None = None

    @model_validator(mode="after")
    def _config_for_type(self) -> HTTPRouteFilter:
        if self.type == "RequestHeaderModifier" and self.request_header_modifier is None:
            raise ValueError("type RequestHeaderModifier needs requestHeaderModifier")
        if self.type == "URLRewrite" and self.url_rewrite is None:
            raise ValueError("type URLRewrite needs urlRewrite")
        return self


class HTTPBackendRef(ApiModel):
    """`rules[].backendRefs[]`."""

    group: str = ""
    kind: str = "Service"
    name: Annotated[str, Field(min_length=1)]
    namespace: str | None = None
    port: Port | None = None
    weight: Annotated[int, Field(ge=0, le=1_000_000)] = 1
    filters: list[HTTPRouteFilter] = Field(default_factory=list)


class HTTPRouteTimeouts(ApiModel):
    """`rules[].timeouts`."""

    request: Duration | None = None
    backend_request: Duration | None = None


class HTTPRouteRule(ApiModel):
    """`spec.rules[]`."""

    NOT_ACTED_ON = frozenset({"retry", "sessionPersistence"})

    name: str | None = None
    matches: list[HTTPRouteMatch] = Field(default_factory=list)
    filters: list[HTTPRouteFilter] = Field(default_factory=list)
    backend_refs: list[HTTPBackendRef] = Field(default_factory=list)
    timeouts: HTTPRouteTimeouts | None = None


def _default_rules() -> list[HTTPRouteRule]:
    return [HTTPRouteRule()]


class HTTPRouteSpec(ApiModel):
    """HTTPRoute spec."""

    NOT_ACTED_ON = frozenset({"useDefaultGateways"})

    parent_refs: list[ParentReference] = Field(default_factory=list)
    hostnames: list[str] = Field(default_factory=list)
    rules: list[HTTPRouteRule] = Field(default_factory=_default_rules)


class HTTPRoute(Resource):
    """An HTTPRoute: host and request matching onto backends."""

    KIND = "HTTPRoute"
    spec: HTTPRouteSpec


class ReferenceGrantFrom(ApiModel):
    """`spec.from[]`."""

    group: str
    kind: str
    namespace: str


class ReferenceGrantTo(ApiModel):
    """`spec.to[]`."""

    group: str
    kind: str
    name: str | None = None


class ReferenceGrantSpec(ApiModel):
    """ReferenceGrant spec."""

    from_: list[ReferenceGrantFrom] = Field(alias="from")
    to: list[ReferenceGrantTo]


class ReferenceGrant(Resource):
    """Allows routes in other namespaces to reference objects in this one."""

    KIND = "ReferenceGrant"
    spec: ReferenceGrantSpec

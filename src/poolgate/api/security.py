"""Envoy Gateway's SecurityPolicy (`gateway.envoyproxy.io/v1alpha1`): API keys and JWT.

Fields are as of Envoy Gateway's CRDs in 2026-08 (api/v1alpha1/securitypolicy_types.go,
api_key_auth_types.go, jwt_types.go). poolgate enforces `apiKeyAuth` and `jwt`; every other
section is named in `NOT_ACTED_ON`, so writing one is a warning that it is not enforced.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from poolgate.api._base import ApiModel, Resource
from poolgate.api.envoy import PolicySpec

Name = Annotated[str, Field(min_length=1)]


class SecretObjectReference(ApiModel):
    """`apiKeyAuth.credentialRefs[]`: a core `Secret` (in another namespace with a
    ReferenceGrant)."""

    group: str = ""
    kind: str = "Secret"
    name: Name
    namespace: str | None = None


class APIKeyExtractFrom(ApiModel):
    """`apiKeyAuth.extractFrom[]`: exactly one of headers, params or cookies."""

    headers: list[Name] | None = None
    params: list[Name] | None = None
    cookies: list[Name] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> APIKeyExtractFrom:
        if sum(x is not None for x in (self.headers, self.params, self.cookies)) != 1:
            raise ValueError("exactly one of headers, params or cookies must be specified")
        return self


class APIKeyAuth(ApiModel):
    """`apiKeyAuth`."""

    credential_refs: Annotated[list[SecretObjectReference], Field(min_length=1)]
    extract_from: Annotated[list[APIKeyExtractFrom], Field(min_length=1)]
    forward_client_id_header: str | None = Field(default=None, alias="forwardClientIDHeader")
    sanitize: bool | None = None


class JWTHeaderExtractor(ApiModel):
    """`jwt.providers[].extractFrom.headers[]`."""

    name: Name
    value_prefix: str | None = None


class JWTExtractor(ApiModel):
    """`jwt.providers[].extractFrom`: where the token is (replaces the default
    `Authorization: Bearer` and `access_token` parameter)."""

    headers: list[JWTHeaderExtractor] = Field(default_factory=list)
    cookies: list[Name] = Field(default_factory=list)
    params: list[Name] = Field(default_factory=list)


class ClaimToHeader(ApiModel):
    """`jwt.providers[].claimToHeaders[]`."""

    header: Name
    claim: Name


class LocalObjectReference(ApiModel):
    """`localJWKS.valueRef`: a ConfigMap (Envoy Gateway) or a Secret (poolgate also reads one)
    in the policy's namespace."""

    group: str
    kind: str
    name: Name


class LocalJWKS(ApiModel):
    """`jwt.providers[].localJWKS`: the key set inline, or in a ConfigMap's `jwks` key."""

    type: Literal["Inline", "ValueRef"] = "Inline"
    inline: str | None = None
    value_ref: LocalObjectReference | None = None

    @model_validator(mode="after")
    def _one_source(self) -> LocalJWKS:
        if self.type == "Inline" and (self.inline is None or self.value_ref is not None):
            raise ValueError("type Inline needs inline (and no valueRef)")
        if self.type == "ValueRef" and (self.value_ref is None or self.inline is not None):
            raise ValueError("type ValueRef needs valueRef (and no inline)")
        return self


class RemoteJWKS(ApiModel):
    """`jwt.providers[].remoteJWKS`: never fetched by poolgate (a warning says so)."""

    # The fetch settings of a source poolgate already reports as not fetched.
    INERT = frozenset({"backendRef", "backendRefs", "backendSettings", "cacheDuration",
                       "failedRefetchDuration"})

    uri: Name


class JWTProvider(ApiModel):
    """`jwt.providers[]`."""

    name: Name
    issuer: str | None = None
    audiences: list[str] | None = None
    remote_jwks: RemoteJWKS | None = Field(default=None, alias="remoteJWKS")
    local_jwks: LocalJWKS | None = Field(default=None, alias="localJWKS")
    claim_to_headers: list[ClaimToHeader] = Field(default_factory=list)
    recompute_route: bool | None = None
    extract_from: JWTExtractor | None = None

    @model_validator(mode="after")
    def _one_jwks(self) -> JWTProvider:
        if (self.remote_jwks is None) == (self.local_jwks is None):
            raise ValueError("exactly one of remoteJWKS or localJWKS must be specified")
        return self


class JWT(ApiModel):
    """`jwt`."""

    optional: bool | None = None
    fail_open: bool | None = None
    providers: Annotated[list[JWTProvider], Field(min_length=1, max_length=16)]

    @model_validator(mode="after")
    def _not_both(self) -> JWT:
        if self.optional is not None and self.fail_open is not None:
            raise ValueError("optional and failOpen cannot both be set")
        return self


class SecurityPolicySpec(PolicySpec):
    """SecurityPolicy spec: the authentication poolgate enforces."""

    NOT_ACTED_ON = PolicySpec.NOT_ACTED_ON | {
        "authorization", "basicAuth", "cors", "csrf", "extAuth", "mergeType", "oidc",
    }

    api_key_auth: APIKeyAuth | None = None
    jwt: JWT | None = None


class SecurityPolicy(Resource):
    """Who may send requests through a Gateway or an HTTPRoute."""

    KIND = "SecurityPolicy"
    spec: SecurityPolicySpec

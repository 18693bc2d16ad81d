"""A SecurityPolicy as it applies to a route rule, in the auth package's own types.

`poolgate.config` resolves a SecurityPolicy into a `SecuritySpec` while loading (plain, immutable
data in the snapshot); `poolgate.auth.authenticator.Authenticator` is built from it once per
configuration, when the snapshot is swapped in. API keys are held only as SHA-256 digests, so
neither the snapshot nor anything printed from it carries a key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


class SourceKind(enum.Enum):
    """Where in a request a credential is read from."""

    HEADER = "header"
    PARAM = "param"  # a query parameter
    COOKIE = "cookie"


@dataclass(frozen=True, slots=True)
class KeySource:
    """One place a credential may be: a header (name lower-cased), a query parameter or a
    cookie. `prefix` is a JWT header extractor's `valuePrefix` (`"Bearer "`)."""

    kind: SourceKind
    name: str
    prefix: str = ""


# Envoy's jwt_authn default when a provider names no location: `Authorization: Bearer <token>`
# and the `access_token` query parameter.
DEFAULT_JWT_SOURCES = (
    KeySource(SourceKind.HEADER, "authorization", "Bearer "),
    KeySource(SourceKind.PARAM, "access_token"),
)


@dataclass(frozen=True, slots=True)
class ApiKeyCredential:
    """A client id and the SHA-256 digest of its API key (the key itself is never kept)."""

    client: str
    digest: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class ApiKeySpec:
    """`apiKeyAuth`: the clients' keys, where the key is read (in order: the first source that
    has one is used), the header the client id is forwarded in, and whether the key is removed
    before the request goes upstream (`sanitize`)."""

    credentials: tuple[ApiKeyCredential, ...]
    sources: tuple[KeySource, ...]
    forward_client_id_header: str | None = None
    sanitize: bool = False


@dataclass(frozen=True, slots=True)
class ClaimToHeader:
    """`claimToHeaders[]`: copy a claim (dotted path for nested claims) into a request header."""

    header: str
    claim: str


@dataclass(frozen=True, slots=True)
class JwtProviderSpec:
    """`jwt.providers[]`. `jwks` is the JSON Web Key Set text of a `localJWKS`; a `remoteJWKS`
    provider has `jwks` None and its `remote_uri` set: poolgate never fetches it, so every token
    that reaches that provider's key check is refused (fail closed)."""

    name: str
    issuer: str | None = None
    audiences: tuple[str, ...] = ()
    jwks: str | None = None
    remote_uri: str | None = None
    claim_to_headers: tuple[ClaimToHeader, ...] = ()
    sources: tuple[KeySource, ...] = DEFAULT_JWT_SOURCES


@dataclass(frozen=True, slots=True)
class JwtSpec:
    """`jwt`: a token is accepted when any provider accepts it. `optional` lets a request without
    a token through; `fail_open` lets a request with a missing or invalid token through too."""

    providers: tuple[JwtProviderSpec, ...]
    optional: bool = False
    fail_open: bool = False


@dataclass(frozen=True, slots=True)
class SecuritySpec:
    """One SecurityPolicy: API keys and/or JWT (both must pass when both are set)."""

    namespace: str
    name: str
    api_key: ApiKeySpec | None = None
    jwt: JwtSpec | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(namespace, name) of the SecurityPolicy."""
        return self.namespace, self.name

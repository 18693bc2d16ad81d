"""JWT verification as Envoy's jwt_authn filter does it, with PyJWT's algorithms (cryptography).

For each token, in Envoy's order: parse (header, payload, signature), the issuer (when the
provider names one), the time window (`nbf`, `exp`, with Envoy's 60 s clock skew), the audiences
(when the provider lists some; a mismatch is 403), then the signature against the provider's
keys (a key is tried when its `kid` and `alg` do not contradict the token's). Failures carry
Envoy's status text. The clock is passed in (`now`, seconds since the epoch).
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from jwt.algorithms import get_default_algorithms

from poolgate.auth.jwks import Jwk, parse_jwks
from poolgate.auth.spec import JwtProviderSpec

CLOCK_SKEW_SECONDS = 60  # Envoy's default (JwtProvider.clock_skew_seconds)

_ALGORITHMS = {name: alg for name, alg in get_default_algorithms().items()
               if name in {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256",
                           "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA"}}
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class JwtStatus(enum.Enum):
    """Why a token was refused: the value is Envoy's text (jwt_verify_lib's status string)."""

    MISSING = "Jwt is missing"
    NOT_YET_VALID = "Jwt not yet valid"
    EXPIRED = "Jwt is expired"
    BAD_FORMAT = "Jwt is not in the form of Header.Payload.Signature"
    HEADER_PARSE_ERROR = "Jwt header is an invalid Base64url input or an invalid JSON"
    HEADER_BAD_ALG = "Jwt header [alg] field is not a string"
    HEADER_NOT_IMPLEMENTED_ALG = "Jwt header [alg] field value is invalid"
    HEADER_BAD_KID = "Jwt header [kid] field is not a string"
    PAYLOAD_PARSE_ERROR = "Jwt payload is an invalid Base64 or an invalid JSON"
    SIGNATURE_PARSE_ERROR = "Jwt signature is an invalid Base64"
    UNKNOWN_ISSUER = "Jwt issuer is not configured"
    AUDIENCE_NOT_ALLOWED = "Audiences in Jwt are not allowed"
    VERIFICATION_FAIL = "Jwt verification fails"
    KID_ALG_MISMATCH = "Jwks doesn't have key to match kid or alg from Jwt"
    NO_VALID_KEYS = "Jwks doesn't have any valid public key"
    REMOTE_FETCH_FAILED = "Jwks remote fetch is failed"


class JwtRejected(Exception):
    """A token (or its absence) that does not pass; `status` says why."""

    def __init__(self, status: JwtStatus) -> None:
        super().__init__(status.value)
        self.status = status


@dataclass(frozen=True, slots=True)
class Jwt:
    """A parsed, not yet verified token."""

    alg: str
    kid: str | None
    claims: dict[str, Any]
    signing_input: bytes
    signature: bytes

    @property
    def issuer(self) -> str | None:
        """The `iss` claim."""
        value = self.claims.get("iss")
        return value if isinstance(value, str) else None

    @property
    def audiences(self) -> tuple[str, ...]:
        """The `aud` claim as a tuple (a single string is one audience)."""
        aud = self.claims.get("aud")
        if isinstance(aud, str):
            return (aud,)
        return tuple(aud) if isinstance(aud, list) else ()


def _b64url(text: str) -> bytes:
    if not _BASE64URL.match(text) or len(text) % 4 == 1:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json_object(text: str) -> dict[str, Any]:
    value = orjson.loads(_b64url(text))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def parse_jwt(token: str) -> Jwt:
    """Parse a compact JWS; raises `JwtRejected` with Envoy's parse statuses."""
    parts = token.split(".")
    if len(parts) != 3:
        raise JwtRejected(JwtStatus.BAD_FORMAT)
    header_b64, payload_b64, signature_b64 = parts
    try:
        header = _json_object(header_b64)
    except (ValueError, binascii.Error):
        raise JwtRejected(JwtStatus.HEADER_PARSE_ERROR) from None
    alg = header.get("alg")
    if not isinstance(alg, str):
        raise JwtRejected(JwtStatus.HEADER_BAD_ALG)
    if alg not in _ALGORITHMS:
        raise JwtRejected(JwtStatus.HEADER_NOT_IMPLEMENTED_ALG)  # `none` included
    kid = header.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise JwtRejected(JwtStatus.HEADER_BAD_KID)
    try:
        claims = _json_object(payload_b64)
    except (ValueError, binascii.Error):
        raise JwtRejected(JwtStatus.PAYLOAD_PARSE_ERROR) from None
    if not _claims_well_typed(claims):
        raise JwtRejected(JwtStatus.PAYLOAD_PARSE_ERROR)
    try:
        signature = _b64url(signature_b64)
    except (ValueError, binascii.Error):
        raise JwtRejected(JwtStatus.SIGNATURE_PARSE_ERROR) from None
    if not signature:
        raise JwtRejected(JwtStatus.SIGNATURE_PARSE_ERROR)
    return Jwt(alg, kid, claims, f"{header_b64}.{payload_b64}".encode(), signature)


def _claims_well_typed(claims: dict[str, Any]) -> bool:
    """The registered claims have the types RFC 7519 gives them (Envoy refuses others)."""
    for name in ("iss", "sub", "jti"):
        if name in claims and not isinstance(claims[name], str):
            return False
    for name in ("exp", "nbf", "iat"):
        value = claims.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return False
    aud = claims.get("aud")
    return aud is None or isinstance(aud, str) or (
        isinstance(aud, list) and all(isinstance(a, str) for a in aud))


def _normalized_audience(audience: str) -> str:
    """As Envoy compares audiences: without an `http://`/`https://` scheme or a trailing `/`."""
    for scheme in ("http://", "https://"):
        if audience.startswith(scheme):
            audience = audience[len(scheme):]
            break
    return audience.rstrip("/")


class JwtProvider:
    """One provider's verification: its issuer, audiences and keys (parsed once, at build)."""

    __slots__ = ("_audiences", "keys", "spec")

    def __init__(self, spec: JwtProviderSpec) -> None:
        self.spec = spec
        self.keys: tuple[Jwk, ...] = ()
        if spec.jwks is not None:
            self.keys, _ = parse_jwks(spec.jwks)
        self._audiences = frozenset(_normalized_audience(a) for a in spec.audiences)

    def verify(self, tokens: Sequence[str], now: float) -> dict[str, Any]:
        """The claims of the first token when every token passes; raises `JwtRejected`."""
        if not tokens:
            raise JwtRejected(JwtStatus.MISSING)
        claims = [self.verify_one(token, now) for token in tokens]
        return claims[0]

    def verify_one(self, token: str, now: float) -> dict[str, Any]:
        """The claims of one token that passes every check; raises `JwtRejected`."""
        jwt = parse_jwt(token)
        spec = self.spec
        if spec.issuer and jwt.issuer != spec.issuer:
            raise JwtRejected(JwtStatus.UNKNOWN_ISSUER)
        nbf, exp = jwt.claims.get("nbf"), jwt.claims.get("exp")
        if nbf and now + CLOCK_SKEW_SECONDS < nbf:
            raise JwtRejected(JwtStatus.NOT_YET_VALID)
        if exp and now > exp + CLOCK_SKEW_SECONDS:
            raise JwtRejected(JwtStatus.EXPIRED)
        if self._audiences and not any(_normalized_audience(a) in self._audiences
                                       for a in jwt.audiences):
            raise JwtRejected(JwtStatus.AUDIENCE_NOT_ALLOWED)
        if spec.jwks is None:
            # remoteJWKS: poolgate fetches nothing at run time, so it cannot verify (fail closed).
            raise JwtRejected(JwtStatus.REMOTE_FETCH_FAILED)
        self._verify_signature(jwt)
        return jwt.claims

    def _verify_signature(self, jwt: Jwt) -> None:
        algorithm = _ALGORITHMS[jwt.alg]
        matched = False
        for key in self.keys:
            if jwt.kid and key.kid and key.kid != jwt.kid:
                continue
            if key.alg and key.alg != jwt.alg:
                continue
            matched = True
            if not key.can_verify(jwt.alg):
                continue
            try:
                if algorithm.verify(jwt.signing_input, key.key, jwt.signature):
                    return
            except Exception:  # a signature this key cannot even check: not verified by it
                continue
        raise JwtRejected(JwtStatus.VERIFICATION_FAIL if matched
                          else JwtStatus.KID_ALG_MISMATCH)


def claim_value(claims: dict[str, Any], path: str) -> str | None:
    """A claim (dotted path for nested ones) as a header value: strings as they are, integers
    without a decimal point, booleans `true`/`false`; None for a missing claim or one of another
    type (arrays and objects), as Envoy's claimToHeaders."""
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value) if value >= 0 else f"{float(value):f}"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and value >= 0 else f"{value:f}"
    if isinstance(value, str):
        return value or None
    return None

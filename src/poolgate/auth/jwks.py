"""JSON Web Key Sets: parsed once per configuration into verification keys (PyJWT, cryptography).

Errors carry the text Envoy's JWT library uses for the same problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson
from jwt import PyJWK
from jwt.exceptions import PyJWTError

# JWT algorithm families a key type can verify (as Envoy's jwt_verify_lib).
KEY_TYPE_FAMILIES: dict[str, tuple[str, ...]] = {
    "RSA": ("RS", "PS"), "EC": ("ES",), "oct": ("HS",), "OKP": ("EdDSA",),
}


class JwksError(ValueError):
    """A JWKS poolgate cannot use; the message is Envoy's for the same problem."""


@dataclass(frozen=True, slots=True, eq=False)
class Jwk:
    """One usable key of a JWKS: its `kid` and `alg` when set, its type, the public key."""

    kid: str | None
    alg: str | None
    kty: str
    # A cryptography public key, or the shared secret of an `oct` (HMAC) key: never printed.
    key: Any = field(repr=False)

    def can_verify(self, alg: str) -> bool:
        """Whether this key's type verifies signatures of `alg`."""
        return alg.startswith(KEY_TYPE_FAMILIES.get(self.kty, ()))


def parse_jwks(text: str) -> tuple[tuple[Jwk, ...], list[str]]:
    """(usable keys, why each other key was skipped); raises `JwksError` when the set is not
    JSON, has no `keys` array, or no usable key."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise JwksError("Jwks is an invalid JSON") from None
    if not isinstance(data, dict) or "keys" not in data:
        raise JwksError("Jwks does not have [keys] field")
    if not isinstance(data["keys"], list):
        raise JwksError("[keys] in Jwks is not an array")
    keys: list[Jwk] = []
    skipped: list[str] = []
    for i, item in enumerate(data["keys"]):
        found = _key(item)
        if isinstance(found, str):
            skipped.append(f"keys[{i}]: {found}")
        else:
            keys.append(found)
    if not keys:
        raise JwksError("Jwks doesn't have any valid public key")
    return tuple(keys), skipped


def _key(item: object) -> Jwk | str:
    """One JWKS entry as a key, or why it cannot be used."""
    if not isinstance(item, dict):
        return "not a JSON object"
    kty = item.get("kty")
    if not isinstance(kty, str) or not kty:
        return "[kty] is missing"
    if kty not in KEY_TYPE_FAMILIES:
        return f"[kty] {kty!r} is not supported"
    kid, alg = item.get("kid"), item.get("alg")
    if kid is not None and not isinstance(kid, str):
        return "[kid] is not a string"
    if alg is not None and (not isinstance(alg, str)
                            or not alg.startswith(KEY_TYPE_FAMILIES[kty])):
        return f"[alg] does not suit a {kty} key"
    try:
        jwk = PyJWK(item)
    except (PyJWTError, ValueError, TypeError, KeyError):
        # No detail: an invalid key's fields could be anything, a private part included.
        return f"not a valid {kty} key"
    key = jwk.key
    public = getattr(key, "public_key", None)
    if callable(public):
        key = public()  # a private JWK pasted by mistake: only its public half verifies
    return Jwk(kid, alg, kty, key)

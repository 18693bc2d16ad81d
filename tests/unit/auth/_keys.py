"""Keys generated for the tests (cryptography), their JWKS, and tokens signed with them (PyJWT)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from poolgate.auth.credentials import HeaderLookup

NOW = 1_800_000_000.0  # the clock every test passes in
ISSUER = "https://issuer.example"


@dataclass(frozen=True)
class SigningKey:
    """A private key, its `kid` and algorithm; `jwk()` is its public JWK."""

    private: Any
    kid: str
    alg: str

    def jwk(self, **extra: Any) -> dict[str, Any]:
        public = self.private.public_key()
        to_jwk = RSAAlgorithm.to_jwk if self.alg.startswith("RS") else ECAlgorithm.to_jwk
        return {**json.loads(to_jwk(public)), "kid": self.kid, "alg": self.alg, **extra}

    def sign(self, claims: dict[str, Any], *, kid: str | None = None, **header: Any) -> str:
        return jwt.encode(claims, self.private, algorithm=self.alg,
                          headers={"kid": kid if kid is not None else self.kid, **header})


def rsa_key(kid: str = "rsa-1") -> SigningKey:
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), kid, "RS256")


def ec_key(kid: str = "ec-1") -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP256R1()), kid, "ES256")


def jwks(*keys: SigningKey) -> str:
    return json.dumps({"keys": [k.jwk() for k in keys]})


def claims(**overrides: Any) -> dict[str, Any]:
    """A token's claims valid at NOW: issuer, audience, subject, an hour of validity."""
    base: dict[str, Any] = {"iss": ISSUER, "aud": "poolgate", "sub": "alice",
                            "iat": int(NOW), "exp": int(NOW) + 3600}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


class Headers:
    """Request headers as the gateway's `RequestHeaders` answers `getall`."""

    def __init__(self, lines: list[tuple[str, str]]) -> None:
        self.lines = lines

    def getall(self, name: str) -> list[str]:
        return [v for n, v in self.lines if n.lower() == name.lower()]


@dataclass
class Request:
    """A request to authenticate: header lines, raw path (with query), host."""

    lines: list[tuple[str, str]]
    raw_path: str = "/v1/chat/completions"
    host: str = "gw.example"

    @property
    def headers(self) -> HeaderLookup:
        return Headers(self.lines)


def request(*lines: tuple[str, str], path: str = "/v1/chat/completions") -> Request:
    return Request(list(lines), path)

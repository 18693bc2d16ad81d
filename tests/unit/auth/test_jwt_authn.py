"""JWT verification with Envoy's checks, order and texts: keys generated here (cryptography),
tokens signed here (PyJWT)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from poolgate.auth.jwks import JwksError, parse_jwks
from poolgate.auth.jwt_authn import JwtProvider, JwtRejected, JwtStatus, claim_value
from poolgate.auth.spec import JwtProviderSpec
from tests.unit.auth._keys import ISSUER, NOW, claims, ec_key, jwks, rsa_key

RSA, EC, OTHER = rsa_key(), ec_key(), rsa_key("rsa-1")  # OTHER: same kid as RSA, another key


def provider(*, issuer: str | None = ISSUER, audiences: tuple[str, ...] = ("poolgate",),
             keys: str | None = None) -> JwtProvider:
    return JwtProvider(JwtProviderSpec("p", issuer, audiences,
                                       jwks=keys if keys is not None else jwks(RSA, EC)))


def status_of(token: str, p: JwtProvider | None = None, now: float = NOW) -> JwtStatus | None:
    try:
        (p or provider()).verify_one(token, now)
    except JwtRejected as e:
        return e.status
    return None


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("key", [RSA, EC], ids=["RS256", "ES256"])
def test_a_good_token_gives_its_claims(key: Any) -> None:
    token = key.sign(claims())
    assert provider().verify([token], NOW)["sub"] == "alice"


@pytest.mark.parametrize(
    ("token_claims", "now", "status"),
    [
        pytest.param(claims(exp=int(NOW) - 61), NOW, JwtStatus.EXPIRED, id="expired"),
        pytest.param(claims(exp=int(NOW) - 30), NOW, None, id="expired-within-60s-skew"),
        pytest.param(claims(nbf=int(NOW) + 61), NOW, JwtStatus.NOT_YET_VALID, id="nbf-future"),
        pytest.param(claims(nbf=int(NOW) + 30), NOW, None, id="nbf-within-skew"),
        pytest.param(claims(iss="https://evil.example"), NOW, JwtStatus.UNKNOWN_ISSUER,
                     id="wrong-issuer"),
        pytest.param(claims(iss=None), NOW, JwtStatus.UNKNOWN_ISSUER, id="no-issuer"),
        pytest.param(claims(aud="someone-else"), NOW, JwtStatus.AUDIENCE_NOT_ALLOWED,
                     id="wrong-audience"),
        pytest.param(claims(aud=["x", "https://poolgate/"]), NOW, None,
                     id="audience-list-normalised"),
        pytest.param(claims(aud=None), NOW, JwtStatus.AUDIENCE_NOT_ALLOWED, id="no-audience"),
        pytest.param(claims(exp="soon"), NOW, JwtStatus.PAYLOAD_PARSE_ERROR, id="exp-not-number"),
    ],
)
def test_claims_are_checked(token_claims: dict[str, Any], now: float,
                            status: JwtStatus | None) -> None:
    assert status_of(RSA.sign(token_claims), now=now) is status


def test_without_issuer_or_audiences_configured_any_is_accepted() -> None:
    p = provider(issuer=None, audiences=())
    assert status_of(RSA.sign(claims(iss="anyone", aud="anything")), p) is None


def test_a_token_signed_by_another_key_fails_verification() -> None:
    assert status_of(OTHER.sign(claims())) is JwtStatus.VERIFICATION_FAIL


def test_a_tampered_payload_fails_verification() -> None:
    header, _, signature = RSA.sign(claims()).split(".")
    forged = f"{header}.{_b64(claims(sub='mallory'))}.{signature}"
    assert status_of(forged) is JwtStatus.VERIFICATION_FAIL


def test_an_unknown_kid_matches_no_key() -> None:
    assert status_of(RSA.sign(claims(), kid="rotated-away")) is JwtStatus.KID_ALG_MISMATCH


def test_a_token_without_kid_is_tried_against_every_key() -> None:
    token = RSA.sign(claims(), kid="")
    assert status_of(token) is None


def test_an_algorithm_the_keys_do_not_allow_matches_no_key() -> None:
    # An HS256 token made with the RSA public key as the secret (the classic confusion attack).
    keys = json.dumps({"keys": [RSA.jwk()]})
    header = _b64({"alg": "HS256", "kid": RSA.kid})
    token = f"{header}.{_b64(claims())}.{base64.urlsafe_b64encode(b'x' * 32).decode().rstrip('=')}"
    assert status_of(token, provider(keys=keys)) is JwtStatus.KID_ALG_MISMATCH


@pytest.mark.parametrize(
    ("token", "status"),
    [
        pytest.param("not-a-jwt", JwtStatus.BAD_FORMAT, id="one-part"),
        pytest.param("a.b.c.d", JwtStatus.BAD_FORMAT, id="four-parts"),
        pytest.param("!!.e30.c2ln", JwtStatus.HEADER_PARSE_ERROR, id="header-not-base64"),
        pytest.param(f"{_b64({'typ': 'JWT'})}.e30.c2ln", JwtStatus.HEADER_BAD_ALG, id="no-alg"),
        pytest.param(f"{_b64({'alg': 'none'})}.{_b64(claims())}.",
                     JwtStatus.HEADER_NOT_IMPLEMENTED_ALG, id="alg-none"),
        pytest.param(f"{_b64({'alg': 'RS256', 'kid': 7})}.e30.c2ln", JwtStatus.HEADER_BAD_KID,
                     id="kid-not-string"),
        pytest.param(f"{_b64({'alg': 'RS256'})}.bm90IGpzb24.c2ln", JwtStatus.PAYLOAD_PARSE_ERROR,
                     id="payload-not-json"),
        pytest.param(f"{_b64({'alg': 'RS256'})}.{_b64(claims())}.", JwtStatus.SIGNATURE_PARSE_ERROR,
                     id="empty-signature"),
    ],
)
def test_malformed_tokens(token: str, status: JwtStatus) -> None:
    assert status_of(token) is status


def test_no_token_is_missing() -> None:
    with pytest.raises(JwtRejected) as e:
        provider().verify([], NOW)
    assert e.value.status is JwtStatus.MISSING and str(e.value) == "Jwt is missing"


def test_every_token_must_verify() -> None:
    with pytest.raises(JwtRejected) as e:
        provider().verify([RSA.sign(claims()), OTHER.sign(claims())], NOW)
    assert e.value.status is JwtStatus.VERIFICATION_FAIL


def test_a_remote_jwks_provider_refuses_what_it_would_have_to_verify() -> None:
    remote = JwtProvider(JwtProviderSpec("r", ISSUER, remote_uri="https://issuer.example/jwks"))
    assert status_of(RSA.sign(claims()), remote) is JwtStatus.REMOTE_FETCH_FAILED
    # The checks before the key set still come first, as in Envoy.
    assert status_of(RSA.sign(claims(exp=int(NOW) - 100)), remote) is JwtStatus.EXPIRED


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("{", "Jwks is an invalid JSON", id="not-json"),
        pytest.param("{}", "Jwks does not have [keys] field", id="no-keys"),
        pytest.param('{"keys": {}}', "[keys] in Jwks is not an array", id="keys-not-array"),
        pytest.param('{"keys": [{"kty": "RSA", "n": "x"}]}',
                     "Jwks doesn't have any valid public key", id="no-valid-key"),
    ],
)
def test_unusable_key_sets(text: str, message: str) -> None:
    with pytest.raises(JwksError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse_jwks(text)


def test_bad_keys_are_skipped_with_a_reason() -> None:
    text = json.dumps({"keys": [{"kty": "RSA", "n": "AQAB"}, RSA.jwk(), {"kty": "XYZ"},
                                EC.jwk(alg="RS256")]})
    keys, skipped = parse_jwks(text)
    assert [k.kid for k in keys] == [RSA.kid]
    assert skipped == ["keys[0]: not a valid RSA key", "keys[2]: [kty] 'XYZ' is not supported",
                       "keys[3]: [alg] does not suit a EC key"]


@pytest.mark.parametrize(
    ("path", "value"),
    [
        pytest.param("sub", "alice", id="string"),
        pytest.param("org.team", "llm", id="nested"),
        pytest.param("tier", "3", id="integer"),
        pytest.param("ratio", "0.500000", id="float"),
        pytest.param("admin", "true", id="bool"),
        pytest.param("groups", None, id="array"),
        pytest.param("org", None, id="object"),
        pytest.param("nope", None, id="missing"),
    ],
)
def test_claim_values_as_envoy_writes_them(path: str, value: str | None) -> None:
    token = {"sub": "alice", "org": {"team": "llm"}, "tier": 3, "ratio": 0.5, "admin": True,
             "groups": ["a"]}
    assert claim_value(token, path) == value

"""One SecurityPolicy at run time: Envoy's 401/403 replies, the client id, and what changes on
the way upstream."""

from __future__ import annotations

import pytest

from poolgate.auth import AccessDenied, Authenticated, AuthenticationFailed, Authenticator
from poolgate.auth.api_keys import key_digest
from poolgate.auth.spec import (
    ApiKeyCredential,
    ApiKeySpec,
    ClaimToHeader,
    JwtProviderSpec,
    JwtSpec,
    KeySource,
    SecuritySpec,
    SourceKind,
)
from tests.unit.auth._keys import ISSUER, NOW, claims, ec_key, jwks, request, rsa_key

KEY = "sk-team-a-0123456789"
RSA, EC = rsa_key(), ec_key()


def api_keys(*sources: KeySource, header: str | None = None,
             sanitize: bool = False) -> Authenticator:
    spec = ApiKeySpec((ApiKeyCredential("team-a", key_digest(KEY)),),
                      sources or (KeySource(SourceKind.HEADER, "authorization"),), header, sanitize)
    return Authenticator(SecuritySpec("default", "keys", api_key=spec))


def jwt_policy(*providers: JwtProviderSpec, optional: bool = False,
               fail_open: bool = False) -> Authenticator:
    providers = providers or (JwtProviderSpec(
        "main", ISSUER, ("poolgate",), jwks(RSA),
        claim_to_headers=(ClaimToHeader("x-user", "sub"), ClaimToHeader("x-team", "org.team"))),)
    return Authenticator(SecuritySpec("default", "jwt", jwt=JwtSpec(providers, optional,
                                                                    fail_open)))


def failure(auth: Authenticator, *lines: tuple[str, str],
            path: str = "/v1/chat/completions") -> AuthenticationFailed:
    with pytest.raises(AuthenticationFailed) as e:
        auth.authenticate(request(*lines, path=path), NOW)
    return e.value


def test_the_openai_sdk_bearer_key_passes_with_its_client_id() -> None:
    passed = api_keys().authenticate(request(("Authorization", f"Bearer {KEY}")), NOW)
    assert passed.client_id == "team-a"


@pytest.mark.parametrize(
    ("lines", "detail"),
    [
        pytest.param([], "api_key_auth{missing_api_key}", id="missing"),
        pytest.param([("authorization", "Bearer sk-wrong")], "api_key_auth{unknown_api_key}",
                     id="wrong"),
    ],
)
def test_a_missing_or_wrong_key_is_envoys_401(lines: list[tuple[str, str]], detail: str) -> None:
    e = failure(api_keys(), *lines, path="/v1/chat/completions?api-version=1")
    assert (e.status, e.message, e.detail) == (401, "Client authentication failed.", detail)
    assert e.headers == {"www-authenticate": 'Bearer realm="http://gw.example/v1/chat/completions"'}
    reply = e.reply()
    assert (reply.content_type, reply.body) == ("text/plain", b"Client authentication failed.")
    assert "sk-wrong" not in str(e) + e.detail + str(reply)


def test_a_key_read_from_elsewhere_gets_an_apikey_challenge() -> None:
    e = failure(api_keys(KeySource(SourceKind.HEADER, "x-api-key")))
    assert e.headers["www-authenticate"].startswith('ApiKey realm="http://gw.example/')


def test_forward_client_id_header_replaces_what_the_client_sent() -> None:
    auth = api_keys(header="x-client-id")
    passed = auth.authenticate(request(("authorization", KEY)), NOW)
    _, lines = passed.apply("/v1", [("authorization", KEY), ("X-Client-ID", "spoofed")])
    assert lines == [("authorization", KEY), ("x-client-id", "team-a")]


def test_sanitize_removes_the_key_from_every_source() -> None:
    auth = api_keys(KeySource(SourceKind.HEADER, "x-api-key"), KeySource(SourceKind.PARAM, "key"),
                    KeySource(SourceKind.COOKIE, "k"), sanitize=True)
    passed = auth.authenticate(request(path=f"/v1?key={KEY}&x=1"), NOW)
    path, lines = passed.apply(f"/v1?key={KEY}&x=1",
                               [("x-api-key", "other"), ("cookie", f"k={KEY}; a=1")])
    assert (path, lines) == ("/v1?x=1", [("cookie", "a=1")])
    assert auth.credential_params == {"key"}


def test_a_good_jwt_gives_sub_and_claim_headers_and_drops_spoofed_ones() -> None:
    token = RSA.sign(claims(org={"team": "llm"}))
    passed = jwt_policy().authenticate(request(("authorization", f"Bearer {token}")), NOW)
    assert passed.client_id == "alice"
    _, lines = passed.apply("/", [("authorization", f"Bearer {token}"), ("X-User", "root")])
    assert lines == [("authorization", f"Bearer {token}"), ("x-user", "alice"),
                     ("x-team", "llm")]


@pytest.mark.parametrize(
    ("token_claims", "status", "message", "error"),
    [
        pytest.param(None, 401, "Jwt is missing", False, id="missing"),
        pytest.param(claims(exp=int(NOW) - 3600), 401, "Jwt is expired", True, id="expired"),
        pytest.param(claims(iss="x"), 401, "Jwt issuer is not configured", True, id="issuer"),
        pytest.param(claims(aud="x"), 403, "Audiences in Jwt are not allowed", True,
                     id="audience"),
    ],
)
def test_jwt_failures_are_envoys_replies(token_claims: dict[str, object] | None, status: int,
                                         message: str, error: bool) -> None:
    lines = [("authorization", f"Bearer {RSA.sign(token_claims)}")] if token_claims else []
    e = failure(jwt_policy(), *lines, path="/v1/models?limit=1")
    assert (e.status, e.message) == (status, message)
    assert isinstance(e, AccessDenied) == (status == 403)
    expected = 'Bearer realm="http://gw.example/v1/models"'
    assert e.headers["www-authenticate"] == expected + (', error="invalid_token"' if error else "")
    assert e.detail == "jwt_authn_access_denied{" + message.replace(" ", "_") + "}"


def test_any_provider_may_accept_and_the_last_reason_is_reported() -> None:
    first = JwtProviderSpec("rsa", ISSUER, jwks=jwks(RSA))
    second = JwtProviderSpec("ec", "https://other.example", jwks=jwks(EC))
    auth = jwt_policy(first, second)
    token = EC.sign(claims(iss="https://other.example"))
    passed = auth.authenticate(request(("authorization", f"Bearer {token}")), NOW)
    assert passed.client_id == "alice"
    e = failure(auth, ("authorization", f"Bearer {RSA.sign(claims(exp=1))}"))
    assert e.message == "Jwt issuer is not configured"  # the second provider's reason


def test_optional_lets_a_request_without_token_through_but_not_a_bad_token() -> None:
    auth = jwt_policy(optional=True)
    assert auth.authenticate(request(), NOW) == Authenticated(
        None, frozenset({"x-user", "x-team"}))
    assert failure(auth, ("authorization", "Bearer a.b.c")).status == 401


def test_fail_open_lets_a_bad_token_through_unauthenticated() -> None:
    passed = jwt_policy(fail_open=True).authenticate(request(("authorization", "Bearer x.y.z")),
                                                      NOW)
    assert passed.client_id is None


def test_api_key_and_jwt_must_both_pass_and_the_key_names_the_client() -> None:
    both = Authenticator(SecuritySpec(
        "default", "both",
        api_key=ApiKeySpec((ApiKeyCredential("team-a", key_digest(KEY)),),
                           (KeySource(SourceKind.HEADER, "x-api-key"),)),
        jwt=JwtSpec((JwtProviderSpec("main", ISSUER, jwks=jwks(RSA)),))))
    token = RSA.sign(claims())
    ok = both.authenticate(request(("x-api-key", KEY), ("authorization", f"Bearer {token}")), NOW)
    assert ok.client_id == "team-a"
    assert failure(both, ("x-api-key", KEY)).message == "Jwt is missing"
    assert failure(both, ("authorization", f"Bearer {token}")).message == \
        "Client authentication failed."


def test_the_realm_escapes_quotes_and_is_bounded() -> None:
    e = failure(api_keys(), path='/v1/"x"' + "a" * 400)
    realm = e.headers["www-authenticate"]
    assert '%22x%22' in realm and len(realm) < 300


def test_repr_names_the_policy_not_its_keys() -> None:
    assert repr(api_keys()) == "<Authenticator default/keys api_keys=1 jwt_providers=0>"

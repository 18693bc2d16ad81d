"""SecurityPolicy resolution: targets and precedence (rule > route > Gateway, whole), the Secrets
and ConfigMaps it reads (only those), and what is refused or warned about. No problem ever
quotes a secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from poolgate.auth.api_keys import key_digest
from poolgate.auth.spec import KeySource, SourceKind
from poolgate.config.build import LoadResult
from poolgate.config.snapshot import Snapshot
from poolgate.config.validate_report import render_validation
from tests.unit.config.manifests import GATEWAY, POOL, load, messages, route

KEY_A, KEY_B = "sk-team-a-0123456789", "sk-team-b-abcdefghij"

SECRET = f"""
apiVersion: v1
kind: Secret
metadata: {{name: api-keys}}
type: Opaque
stringData: {{team-a: {KEY_A}}}
data: {{team-b: {base64.b64encode(KEY_B.encode()).decode()}}}
"""

SP = """
apiVersion: gateway.envoyproxy.io/v1alpha1
kind: SecurityPolicy
metadata: {{name: {name}}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: {kind}, name: {target}{section}}}]
{body}
"""

API_KEYS = """\
  apiKeyAuth:
    credentialRefs: [{name: api-keys}]
    extractFrom: [{headers: [Authorization, x-api-key]}, {params: [key]}]"""

JWKS = json.dumps({"keys": [{**json.loads(RSAAlgorithm.to_jwk(
    rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key())),
    "kid": "k1", "alg": "RS256"}]})


BACKEND = "{backendRefs: [{group: inference.networking.x-k8s.io, kind: InferencePool, name: pool}]}"
R = route("r", f"- {BACKEND}")


def sp(name: str, kind: str, target: str, body: str, section: str = "") -> str:
    return SP.format(name=name, kind=kind, target=target, body=body,
                     section=f", sectionName: {section}" if section else "")


def built(result: LoadResult) -> Snapshot:
    assert result.snapshot is not None, messages(result)
    return result.snapshot


def secrets_absent(result: LoadResult) -> None:
    text = render_validation(result, strict=False)[0]
    for secret in (KEY_A, KEY_B, base64.b64encode(KEY_B.encode()).decode()):
        assert secret not in text


def test_api_keys_of_a_route_policy(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, POOL, R, SECRET,
                  sp("keys", "HTTPRoute", "r", API_KEYS))
    spec = built(result).routes[0].rules[0].security
    assert spec is not None and spec.api_key is not None
    assert [(c.client, c.digest) for c in spec.api_key.credentials] == [
        ("team-a", key_digest(KEY_A)), ("team-b", key_digest(KEY_B))]
    assert spec.api_key.sources == (KeySource(SourceKind.HEADER, "authorization"),
                                    KeySource(SourceKind.HEADER, "x-api-key"),
                                    KeySource(SourceKind.PARAM, "key"))
    assert (result.loaded["Secret"], result.problems) == (1, ())
    secrets_absent(result)


def test_only_referenced_secrets_are_read(tmp_path: Path) -> None:
    other = "apiVersion: v1\nkind: Secret\nmetadata: {name: hf-token}\ndata: {token: '!!nope'}\n"
    result = load(tmp_path, GATEWAY, POOL, R, SECRET, other,
                  "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cfg}\ndata: {a: b}\n",
                  sp("keys", "HTTPRoute", "r", API_KEYS))
    built(result)
    assert (result.loaded.get("Secret"), result.skipped) == (1, {"ConfigMap": 1, "Secret": 1})


def test_precedence_is_rule_then_route_then_gateway_whole(tmp_path: Path) -> None:
    jwt = f"  jwt:\n    providers: [{{name: p, localJWKS: {{type: Inline, inline: '{JWKS}'}}}}]"
    result = load(
        tmp_path, GATEWAY, POOL, SECRET,
        route("with-own", f"- {BACKEND}\n- {{name: special, {BACKEND[1:]}"),
        route("plain", f"- {BACKEND}"),
        sp("gw", "Gateway", "gw", API_KEYS),
        sp("own", "HTTPRoute", "with-own", jwt),
        sp("rule", "HTTPRoute", "with-own", API_KEYS, section="special"),
    )
    s = built(result)
    with_own = next(r for r in s.routes if r.name == "with-own")
    plain = next(r for r in s.routes if r.name == "plain")
    names = [(rule.security.name if rule.security else None) for rule in
             (*with_own.rules, *plain.rules)]
    assert names == ["own", "rule", "gw"]
    own = with_own.rules[0].security
    assert own is not None and own.api_key is None  # whole: the Gateway's keys are not merged in


def test_a_more_specific_policy_without_authentication_is_warned_about(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, POOL, route("r", f"- {BACKEND}\n- {BACKEND}"), SECRET,
                  sp("gw", "Gateway", "gw", API_KEYS),
                  sp("cors", "HTTPRoute", "r", "  cors: {allowOrigins: ['*']}"))
    built(result)
    text = "\n".join(messages(result))
    assert text.count("this policy replaces SecurityPolicy default/gw whole") == 1
    assert "requests there are not authenticated" in text


def test_missing_secret_is_an_error_naming_it(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, POOL, R, sp("keys", "HTTPRoute", "r", API_KEYS))
    assert result.snapshot is None
    assert messages(result) == [
        "error: spec.apiKeyAuth.credentialRefs[0]: Secret default/api-keys not found",
        "error: spec.apiKeyAuth.credentialRefs: no usable API key (every request would be "
        "refused)",
    ]


def test_secret_problems_never_show_a_value(tmp_path: Path) -> None:
    bad = (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: api-keys}}\n"
           f"data: {{team-a: '{KEY_A}!'}}\nstringData: {{team-b: 12345678}}\n")
    result = load(tmp_path, GATEWAY, POOL, R, bad,
                  sp("keys", "HTTPRoute", "r", API_KEYS))
    assert result.snapshot is None
    text = "\n".join(messages(result))
    assert "stringData.team-b: input should be a valid string" in text
    assert "12345678" not in text and KEY_A not in text


def test_secret_without_usable_keys(tmp_path: Path) -> None:
    empty = "apiVersion: v1\nkind: Secret\nmetadata: {name: api-keys}\nstringData: {a: ''}\n"
    result = load(tmp_path, GATEWAY, POOL, R, empty,
                  sp("keys", "HTTPRoute", "r", API_KEYS))
    assert result.snapshot is None
    assert messages(result) == [
        "warning: key 'a' is empty: no request can present it",
        "error: spec.apiKeyAuth.credentialRefs: no usable API key (every request would be "
        "refused)",
    ]


def test_invalid_base64_and_shared_keys_are_errors(tmp_path: Path) -> None:
    secret = (f"apiVersion: v1\nkind: Secret\nmetadata: {{name: api-keys}}\n"
              f"data: {{broken: 'not base64!'}}\nstringData: {{x: {KEY_A}, y: {KEY_A}}}\n")
    result = load(tmp_path, GATEWAY, POOL, R, secret,
                  sp("keys", "HTTPRoute", "r", API_KEYS))
    assert result.snapshot is None
    assert messages(result) == [
        "error: data.broken is not valid base64",
        "error: spec.apiKeyAuth.credentialRefs[0]: clients 'x' and 'y' have the same API key; "
        "each client needs its own",
    ]
    secrets_absent(result)


def test_a_secret_in_another_namespace_needs_a_reference_grant(tmp_path: Path) -> None:
    secret = SECRET.replace("{name: api-keys}", "{name: api-keys, namespace: vault}")
    body = API_KEYS.replace("{name: api-keys}", "{name: api-keys, namespace: vault}")
    refused = load(tmp_path, GATEWAY, POOL, R, secret, sp("keys", "HTTPRoute", "r", body))
    assert ("no ReferenceGrant there allows SecurityPolicies from default"
            in refused.errors[0].message)
    grant = """
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: keys, namespace: vault}
spec:
  from: [{group: gateway.envoyproxy.io, kind: SecurityPolicy, namespace: default}]
  to: [{group: "", kind: Secret}]
"""
    granted = load(tmp_path, GATEWAY, POOL, R, secret, grant,
                   sp("keys", "HTTPRoute", "r", body))
    built(granted)


def test_jwks_from_a_configmap(tmp_path: Path) -> None:
    cm = f"apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: jwks}}\ndata: {{jwks: '{JWKS}'}}\n"
    body = """\
  jwt:
    providers:
    - name: main
      issuer: https://issuer.example
      audiences: [poolgate]
      localJWKS: {type: ValueRef, valueRef: {group: "", kind: ConfigMap, name: jwks}}
      claimToHeaders: [{header: x-user, claim: sub}]
      extractFrom: {headers: [{name: x-token, valuePrefix: "JWT "}]}"""
    result = load(tmp_path, GATEWAY, POOL, R, cm, sp("jwt", "HTTPRoute", "r", body))
    spec = built(result).routes[0].rules[0].security
    assert spec is not None and spec.jwt is not None
    [provider] = spec.jwt.providers
    assert (provider.issuer, provider.audiences, provider.jwks) == (
        "https://issuer.example", ("poolgate",), JWKS)
    assert provider.sources == (KeySource(SourceKind.HEADER, "x-token", "JWT "),)
    assert result.loaded["ConfigMap"] == 1


def test_remote_jwks_is_a_warning_and_recompute_route_is_ignored(tmp_path: Path) -> None:
    body = """\
  jwt:
    providers:
    - name: remote
      remoteJWKS: {uri: 'https://issuer.example/.well-known/jwks.json', cacheDuration: 5m}
      claimToHeaders: [{header: x-user, claim: sub}]
      recomputeRoute: true"""
    result = load(tmp_path, GATEWAY, POOL, R, sp("jwt", "HTTPRoute", "r", body))
    spec = built(result).routes[0].rules[0].security
    assert spec is not None and spec.jwt is not None
    assert spec.jwt.providers[0].jwks is None  # refused at run time: fail closed
    assert messages(result) == [
        "warning: spec.jwt.providers[0].remoteJWKS: poolgate does not fetch remote key sets, so "
        "tokens this provider would accept are refused with 401 'Jwks remote fetch is failed' "
        "(fail closed); use localJWKS",
        "warning: spec.jwt.providers[0].recomputeRoute: routes are not matched again with the "
        "claim headers; ignored",
    ]


def test_an_unusable_inline_jwks_is_an_error(tmp_path: Path) -> None:
    body = "  jwt:\n    providers: [{name: p, localJWKS: {type: Inline, inline: '{}'}}]"
    result = load(tmp_path, GATEWAY, POOL, R, sp("jwt", "HTTPRoute", "r", body))
    assert [str(p.message) for p in result.errors] == [
        "spec.jwt.providers[0].localJWKS: Jwks does not have [keys] field"]


def test_fields_poolgate_does_not_enforce_are_warnings(tmp_path: Path) -> None:
    body = API_KEYS + "\n  cors: {allowOrigins: ['*']}\n  authorization: {defaultAction: Deny}"
    result = load(tmp_path, GATEWAY, POOL, R, SECRET, sp("keys", "HTTPRoute", "r", body))
    built(result)
    assert messages(result) == [
        "warning: spec.cors is a field of SecurityPolicy that poolgate does not act on; it is "
        "ignored",
        "warning: spec.authorization is a field of SecurityPolicy that poolgate does not act "
        "on; it is ignored",
    ]


def test_a_policy_with_only_unenforced_authentication_is_refused(tmp_path: Path) -> None:
    body = "  basicAuth: {users: {name: htpasswd}}"
    result = load(tmp_path, GATEWAY, POOL, R, sp("basic", "HTTPRoute", "r", body))
    assert result.snapshot is None
    text, code = render_validation(result, strict=False)
    assert code == 1 and "invalid" in text.splitlines()[-1]
    assert ("error: spec.basicAuth: poolgate enforces only apiKeyAuth and jwt, and this policy "
            "sets neither") in "\n".join(messages(result))


def test_a_listener_section_is_refused_rather_than_ignored(tmp_path: Path) -> None:
    result = load(tmp_path, GATEWAY, POOL, R, SECRET,
                  sp("keys", "Gateway", "gw", API_KEYS, section="http"))
    assert [p.message for p in result.errors] == [
        "target Gateway default/gw sectionName http: listener-level policies are not supported"]


def test_schema_errors(tmp_path: Path) -> None:
    body = ("  apiKeyAuth:\n    credentialRefs: [{name: api-keys}]\n"
            "    extractFrom: [{headers: [a], params: [b]}]")
    result = load(tmp_path, GATEWAY, POOL, R, SECRET, sp("keys", "HTTPRoute", "r", body))
    assert [p.message for p in result.errors] == [
        "spec.apiKeyAuth.extractFrom[0]: exactly one of headers, params or cookies must be "
        "specified"]

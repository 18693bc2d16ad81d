"""SecurityPolicy resources resolved into `SecuritySpec` values, as Envoy Gateway translates them.

API keys come from the Secrets `credentialRefs` name (each key of a Secret is a client id, its
value the key; `stringData` wins over `data`), read into SHA-256 digests here so the snapshot
never holds a key. A JWKS comes inline or from a ConfigMap's (or Secret's) `jwks` key. Secrets and
ConfigMaps are read only when referenced (`HeldDocuments`); problems never quote their values.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence

from poolgate.api import core, gateway, security
from poolgate.api.kinds import ENVOY_GROUP
from poolgate.api.loader import HeldDocument, LoadedResource, validate_held
from poolgate.auth.api_keys import key_digest
from poolgate.auth.jwks import JwksError, parse_jwks
from poolgate.auth.spec import (
    DEFAULT_JWT_SOURCES,
    ApiKeyCredential,
    ApiKeySpec,
    ClaimToHeader,
    JwtProviderSpec,
    JwtSpec,
    KeySource,
    SecuritySpec,
    SourceKind,
)
from poolgate.config._report import Report
from poolgate.config.backends import reference_granted

# Authentication and authorization sections poolgate cannot enforce: a policy with one of them
# and none poolgate enforces would let every request through, so it is refused.
UNENFORCED_ACCESS = ("authorization", "basicAuth", "extAuth", "oidc")
JWKS_KEY = "jwks"  # Envoy Gateway reads this key of the ConfigMap (else its only entry)
_HEADER_NAME = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class HeldDocuments:
    """The Secrets and ConfigMaps the loader held, validated the first time one is referenced."""

    def __init__(self, held: Sequence[HeldDocument], report: Report) -> None:
        self.report = report
        self._by_key: dict[tuple[str, str], list[HeldDocument]] = {}
        for doc in held:
            self._by_key.setdefault((doc.kind, doc.key), []).append(doc)
        self._read: dict[tuple[str, str], LoadedResource | None] = {}
        self._values: dict[int, dict[str, bytes]] = {}

    @property
    def used(self) -> list[LoadedResource]:
        """The referenced documents that validated, in first-use order."""
        return [r for r in self._read.values() if r is not None]

    def get(self, kind: str, key: str, about: LoadedResource, where: str) -> LoadedResource | None:
        """The `kind` ns/name, validated; a missing, duplicated or invalid one is an error."""
        slot = (kind, key)
        if slot in self._read:
            return self._read[slot]
        docs = self._by_key.get(slot, [])
        found: LoadedResource | None = None
        if not docs:
            self.report.error(about, f"{where}: {kind} {key} not found")
        elif len(docs) > 1:
            first = docs[0].source
            self.report.error(about, f"{where}: {kind} {key} is defined more than once (first at "
                                     f"{first.file}:{first.line}); which one is meant is unclear")
        else:
            found, problems = validate_held(docs[0])
            self.report.problems.extend(problems)
        self._read[slot] = found
        return found

    def secret_values(self, loaded: LoadedResource) -> dict[str, bytes]:
        """A Secret's keys and values: `data` base64-decoded, `stringData` over it (as the API
        server merges them). Invalid base64 is an error naming the key, never the value;
        reported once however often the Secret is referenced."""
        found = self._values.get(id(loaded))
        if found is None:
            found = self._values[id(loaded)] = _secret_values(loaded, self.report)
        return found


def security_policy(about: LoadedResource, held: HeldDocuments,
                    grants: Sequence[gateway.ReferenceGrant], report: Report) -> SecuritySpec:
    """One SecurityPolicy as a SecuritySpec (fields it does not define were reported by the
    loader, as for every kind); problems go to `report`."""
    res = about.resource
    assert isinstance(res, security.SecurityPolicy)
    spec = res.spec
    api = (api_key_auth(about, spec.api_key_auth, held, grants, report)
           if spec.api_key_auth is not None else None)
    jwt = jwt_auth(about, spec.jwt, held, report) if spec.jwt is not None else None
    written = spec.model_extra or {}
    unenforced = [name for name in UNENFORCED_ACCESS if name in written]
    if spec.api_key_auth is None and spec.jwt is None and unenforced:
        report.error(about, f"spec.{unenforced[0]}: poolgate enforces only apiKeyAuth and jwt, "
                            "and this policy sets neither, so requests would reach the backends "
                            "unchecked; it is refused (add apiKeyAuth or jwt, or remove it)")
    return SecuritySpec(res.namespace, res.name, api, jwt)


def api_key_auth(about: LoadedResource, auth: security.APIKeyAuth, held: HeldDocuments,
                 grants: Sequence[gateway.ReferenceGrant], report: Report) -> ApiKeySpec | None:
    """`apiKeyAuth`: the clients' key digests from the referenced Secrets, in Envoy Gateway's
    order (each Secret's client ids sorted; the first Secret naming a client id wins)."""
    namespace = about.resource.namespace
    credentials: list[ApiKeyCredential] = []
    owners: dict[str, str] = {}  # client id -> Secret it came from
    digests: dict[bytes, str] = {}  # key digest -> client id
    for i, ref in enumerate(auth.credential_refs):
        where = f"spec.apiKeyAuth.credentialRefs[{i}]"
        secret = _credential_secret(about, ref, where, namespace, held, grants, report)
        if secret is None:
            continue
        for client, value in sorted(held.secret_values(secret).items()):
            if client in owners:
                report.warning(about, f"{where}: client {client!r} is also in Secret "
                                      f"{owners[client]}; the first one is used")
                continue
            if not value:
                report.warning(secret, f"key {client!r} is empty: no request can present it")
                continue
            digest = key_digest(value)
            if digest in digests:
                report.error(about, f"{where}: clients {digests[digest]!r} and {client!r} have "
                                    "the same API key; each client needs its own")
                continue
            owners[client] = secret.resource.key
            digests[digest] = client
            credentials.append(ApiKeyCredential(client, digest))
    header = auth.forward_client_id_header
    if header is not None and not _HEADER_NAME.match(header):
        report.error(about, f"spec.apiKeyAuth.forwardClientIDHeader: {header!r} is not a valid "
                            "header name")
    if not credentials:
        report.error(about, "spec.apiKeyAuth.credentialRefs: no usable API key (every request "
                            "would be refused)")
        return None
    sources = []
    for e in auth.extract_from:
        sources += [KeySource(SourceKind.HEADER, h.lower()) for h in e.headers or ()]
        sources += [KeySource(SourceKind.PARAM, p) for p in e.params or ()]
        sources += [KeySource(SourceKind.COOKIE, c) for c in e.cookies or ()]
    return ApiKeySpec(tuple(credentials), tuple(sources), header or None, bool(auth.sanitize))


def _credential_secret(about: LoadedResource, ref: security.SecretObjectReference, where: str,
                       namespace: str, held: HeldDocuments,
                       grants: Sequence[gateway.ReferenceGrant],
                       report: Report) -> LoadedResource | None:
    """The Secret a credentialRef names, when it may be read."""
    if ref.group != "" or ref.kind != "Secret":
        report.error(about, f"{where}: {ref.kind} in group {ref.group!r} cannot hold API keys; "
                            "only a core Secret can")
        return None
    target = ref.namespace or namespace
    if target != namespace and not reference_granted(
        grants, namespace, target, "", "Secret", ref.name,
        from_group=ENVOY_GROUP, from_kind="SecurityPolicy",
    ):
        report.error(about, f"{where}: Secret {target}/{ref.name} is in another namespace and no "
                            "ReferenceGrant there allows SecurityPolicies from "
                            f"{namespace} to read it")
        return None
    return held.get("Secret", f"{target}/{ref.name}", about, where)


def _secret_values(loaded: LoadedResource, report: Report) -> dict[str, bytes]:
    """See `HeldDocuments.secret_values`."""
    secret = loaded.resource
    assert isinstance(secret, core.Secret)
    values: dict[str, bytes] = {}
    for name, encoded in secret.data.items():
        try:
            values[name] = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            report.error(loaded, f"data.{name} is not valid base64")
    for name, text in secret.string_data.items():
        values[name] = text.encode()
    if not values:
        report.error(loaded, "the Secret has no data (data and stringData are empty)")
    return values


def jwt_auth(about: LoadedResource, jwt: security.JWT, held: HeldDocuments,
             report: Report) -> JwtSpec:
    """`jwt`: each provider with its key set read once, here, to report a bad one now."""
    providers: list[JwtProviderSpec] = []
    names: set[str] = set()
    for i, p in enumerate(jwt.providers):
        where = f"spec.jwt.providers[{i}]"
        if p.name in names:
            report.error(about, f"{where}.name: provider name {p.name!r} is used twice")
        names.add(p.name)
        jwks: str | None = None
        if p.local_jwks is not None:
            jwks = _local_jwks(about, p.local_jwks, f"{where}.localJWKS", held, report)
        else:
            report.warning(about, f"{where}.remoteJWKS: poolgate does not fetch remote key sets, "
                                  "so tokens this provider would accept are refused with 401 "
                                  "'Jwks remote fetch is failed' (fail closed); use localJWKS")
        if p.recompute_route:
            report.warning(about, f"{where}.recomputeRoute: routes are not matched again with "
                                  "the claim headers; ignored")
        for j, c in enumerate(p.claim_to_headers):
            if not _HEADER_NAME.match(c.header):
                report.error(about, f"{where}.claimToHeaders[{j}].header: {c.header!r} is not a "
                                    "valid header name")
        providers.append(JwtProviderSpec(
            name=p.name, issuer=p.issuer or None, audiences=tuple(p.audiences or ()), jwks=jwks,
            remote_uri=p.remote_jwks.uri if p.remote_jwks is not None else None,
            claim_to_headers=tuple(ClaimToHeader(c.header, c.claim) for c in p.claim_to_headers),
            sources=_jwt_sources(p.extract_from),
        ))
    return JwtSpec(tuple(providers), bool(jwt.optional), bool(jwt.fail_open))


def _jwt_sources(extract: security.JWTExtractor | None) -> tuple[KeySource, ...]:
    if extract is None or not (extract.headers or extract.params or extract.cookies):
        return DEFAULT_JWT_SOURCES
    return (*(KeySource(SourceKind.HEADER, h.name.lower(), h.value_prefix or "")
              for h in extract.headers),
            *(KeySource(SourceKind.COOKIE, c) for c in extract.cookies),
            *(KeySource(SourceKind.PARAM, p) for p in extract.params))


def _local_jwks(about: LoadedResource, local: security.LocalJWKS, where: str,
                held: HeldDocuments, report: Report) -> str | None:
    """The key set text, checked now (an unusable set is an error, skipped keys warnings)."""
    text = local.inline
    ref = local.value_ref
    if ref is not None:
        text = _jwks_from_ref(about, ref, f"{where}.valueRef", held, report)
    if text is None:
        return None
    try:
        _, skipped = parse_jwks(text)
    except JwksError as e:
        report.error(about, f"{where}: {e}")
        return None
    for reason in skipped:
        report.warning(about, f"{where}: {reason}; this key is ignored")
    return text


def _jwks_from_ref(about: LoadedResource, ref: security.LocalObjectReference, where: str,
                   held: HeldDocuments, report: Report) -> str | None:
    if ref.group != "" or ref.kind not in ("ConfigMap", "Secret"):
        report.error(about, f"{where}: a key set is read from a ConfigMap (or a Secret), not "
                            f"{ref.kind} in group {ref.group!r}")
        return None
    found = held.get(ref.kind, f"{about.resource.namespace}/{ref.name}", about, where)
    if found is None:
        return None
    res = found.resource
    if isinstance(res, core.Secret):
        entries = {k: v.decode("utf-8", "replace") for k, v in held.secret_values(found).items()}
    else:
        assert isinstance(res, core.ConfigMap)
        entries = dict(res.data)
    if JWKS_KEY in entries:
        return entries[JWKS_KEY]
    if len(entries) == 1:
        return next(iter(entries.values()))
    report.error(about, f"{where}: {ref.kind} {res.key} has no {JWKS_KEY!r} key"
                        + (" and several others: which one holds the key set is unclear"
                           if entries else " and no data"))
    return None

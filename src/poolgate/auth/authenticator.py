"""One SecurityPolicy at run time: checks a request's credentials and says what changes on its
way upstream. Built once per configuration (at swap), shared by every request it applies to.

As Envoy Gateway runs its filters, the API key is checked first (api_key_auth), then the JWT
(jwt_authn); when the policy has both, both must pass. A request that passes carries a client id
on: the key's client id (its name in the Secret), else the verified JWT's `sub`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from poolgate.auth.api_keys import ApiKeyTable
from poolgate.auth.credentials import (
    CredentialSource,
    api_key,
    jwt_tokens,
    without_cookies,
    without_params,
)
from poolgate.auth.errors import API_KEY_FAILED, AccessDenied, AuthenticationFailed
from poolgate.auth.jwt_authn import JwtProvider, JwtRejected, JwtStatus, claim_value
from poolgate.auth.spec import ApiKeySpec, JwtSpec, KeySource, SecuritySpec, SourceKind

# Envoy's jwt_authn puts at most this much of the path in the realm of `www-authenticate`.
_REALM_PATH_MAX = 256


@dataclass(frozen=True, slots=True)
class Authenticated:
    """A request that passed: its client id, and the edits Envoy's filters would make to it
    before it goes upstream (headers set or added, headers, query parameters and cookies
    removed)."""

    client_id: str | None = None
    remove_headers: frozenset[str] = frozenset()  # lower-case names
    set_headers: tuple[tuple[str, str], ...] = ()  # replace every line of the name
    add_headers: tuple[tuple[str, str], ...] = ()
    remove_params: tuple[str, ...] = ()
    remove_cookies: tuple[str, ...] = ()

    def apply(self, path: str, headers: list[tuple[str, str]]) -> tuple[str, list[tuple[str, str]]]:
        """The upstream path and header lines after the edits (the inputs are not changed)."""
        gone = self.remove_headers | {name.lower() for name, _ in self.set_headers}
        lines = [(n, v) for n, v in headers if n.lower() not in gone] if gone else list(headers)
        if self.remove_cookies:
            lines = without_cookies(lines, self.remove_cookies)
        lines.extend(self.set_headers)
        lines.extend(self.add_headers)
        if self.remove_params:
            path = without_params(path, self.remove_params)
        return path, lines


class Authenticator:
    """The runtime of one SecurityPolicy: its key table and JWT providers."""

    __slots__ = ("credential_params", "keys", "providers", "spec")

    def __init__(self, spec: SecuritySpec) -> None:
        self.spec = spec
        self.keys = ApiKeyTable(spec.api_key.credentials) if spec.api_key is not None else None
        self.providers = (tuple(JwtProvider(p) for p in spec.jwt.providers)
                          if spec.jwt is not None else ())
        # Query parameters that may carry a credential: the access log never shows their values.
        self.credential_params = frozenset(s.name for s in self._sources()
                                           if s.kind is SourceKind.PARAM)

    def _sources(self) -> Iterable[KeySource]:
        if self.spec.api_key is not None:
            yield from self.spec.api_key.sources
        for provider in self.providers:
            yield from provider.spec.sources

    def __repr__(self) -> str:
        spec = self.spec
        return (f"<Authenticator {spec.namespace}/{spec.name} api_keys="
                f"{len(self.keys) if self.keys is not None else 0} jwt_providers="
                f"{len(self.providers)}>")

    def authenticate(self, request: CredentialSource, now: float) -> Authenticated:
        """Check the request's credentials (`now`: seconds since the epoch, for JWT times);
        raises `AuthenticationFailed` (401) or `AccessDenied` (403)."""
        client: str | None = None
        remove: set[str] = set()
        set_headers: list[tuple[str, str]] = []
        add_headers: list[tuple[str, str]] = []
        params: list[str] = []
        cookies: list[str] = []
        api = self.spec.api_key
        if api is not None:
            client = self._check_api_key(request, api)
            if api.forward_client_id_header:
                set_headers.append((api.forward_client_id_header, client))
            if api.sanitize:
                remove.update(s.name for s in api.sources if s.kind is SourceKind.HEADER)
                params.extend(s.name for s in api.sources if s.kind is SourceKind.PARAM)
                cookies.extend(s.name for s in api.sources if s.kind is SourceKind.COOKIE)
        jwt = self.spec.jwt
        if jwt is not None:
            claims, provider = self._check_jwt(request, jwt, now)
            # Claim headers a client sent are never trusted (Envoy sanitizes them first).
            remove.update(c.header.lower() for p in self.providers for c in p.spec.claim_to_headers)
            if provider is not None and claims is not None:
                for c in provider.spec.claim_to_headers:
                    value = claim_value(claims, c.claim)
                    if value is not None:
                        add_headers.append((c.header, value))
                sub = claims.get("sub")
                if client is None and isinstance(sub, str) and sub:
                    client = sub
        return Authenticated(client, frozenset(remove), tuple(set_headers), tuple(add_headers),
                             tuple(params), tuple(cookies))

    def _check_api_key(self, request: CredentialSource, api: ApiKeySpec) -> str:
        assert self.keys is not None
        presented = api_key(request, api.sources)
        if not presented:
            raise self._api_key_failure(request, api, "missing_api_key")
        client = self.keys.client_for(presented)
        if client is None:
            raise self._api_key_failure(request, api, "unknown_api_key")
        return client

    @staticmethod
    def _api_key_failure(request: CredentialSource, api: ApiKeySpec,
                         reason: str) -> AuthenticationFailed:
        # Envoy's api_key_auth sends no www-authenticate; RFC 9110 wants one on a 401.
        bearer = any(s.kind is SourceKind.HEADER and s.name == "authorization"
                     for s in api.sources)
        scheme = "Bearer" if bearer else "ApiKey"
        return AuthenticationFailed(API_KEY_FAILED,
                                    www_authenticate=f'{scheme} realm="{realm(request)}"',
                                    detail=f"api_key_auth{{{reason}}}")

    def _check_jwt(self, request: CredentialSource, jwt: JwtSpec, now: float
                   ) -> tuple[dict[str, Any] | None, JwtProvider | None]:
        """(claims, provider) of the first provider that accepts the request's token; (None,
        None) when the policy lets it through without one."""
        failure = JwtStatus.MISSING
        found_token = False
        for provider in self.providers:
            tokens = jwt_tokens(request, provider.spec.sources)
            found_token = found_token or bool(tokens)
            try:
                return provider.verify(tokens, now), provider
            except JwtRejected as e:
                failure = e.status  # as Envoy's requires_any: the last provider's reason
        if jwt.fail_open or (jwt.optional and not found_token):
            return None, None
        header = f'Bearer realm="{realm(request)}"'
        if failure is not JwtStatus.MISSING:
            header += ', error="invalid_token"'
        kind = AccessDenied if failure is JwtStatus.AUDIENCE_NOT_ALLOWED else AuthenticationFailed
        detail = "jwt_authn_access_denied{" + failure.value.replace(" ", "_") + "}"
        raise kind(failure.value, www_authenticate=header, detail=detail)


def realm(request: CredentialSource) -> str:
    """`http://HOST/PATH` of the request, as Envoy's jwt_authn names the realm, without the query
    string (it may hold the credential) and with quotes escaped."""
    path = request.raw_path.partition("?")[0][:_REALM_PATH_MAX]
    uri = f"http://{request.host}{path}"
    return uri.replace("\\", "%5C").replace('"', "%22")

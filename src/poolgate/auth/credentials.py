"""Reading a credential out of a request, and taking it out again, as Envoy's filters do.

- API keys (Envoy's api_key_auth): the sources are tried in order and the first one holding a
  non-empty value wins. A header gives its first line, with a leading `Bearer ` (exactly that,
  case-sensitive) removed, so `Authorization: Bearer KEY` from the OpenAI SDKs works; a query
  parameter gives its first value, percent-decoded; a cookie gives its value.
- JWTs (Envoy's jwt_authn): every line of every header source that contains the source's
  prefix, from the first base64url character after it; the first value of each query parameter
  source; each cookie source. Every token found must verify.

The functions read a small protocol (`CredentialSource`) that the gateway's request satisfies,
so this module knows nothing of HTTP connections.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Protocol
from urllib.parse import unquote

from poolgate.auth.spec import KeySource, SourceKind

BEARER = "Bearer "
_JWT_START = re.compile(r"[A-Za-z0-9_.\-]")


class HeaderLookup(Protocol):
    """Request headers: every value of a name (case-insensitive), in order."""

    def getall(self, name: str) -> list[str]: ...


class CredentialSource(Protocol):
    """What authentication reads from a request."""

    raw_path: str  # path and query as received

    @property
    def headers(self) -> HeaderLookup: ...

    @property
    def host(self) -> str: ...


def query_values(raw_path: str, name: str) -> list[str]:
    """Every value of the query parameter `name`, percent-decoded (`+` stays a `+`, as in
    Envoy's parseAndDecodeQueryString)."""
    query = raw_path.partition("?")[2]
    if not query:
        return []
    out = []
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == name:
            out.append(unquote(value))
    return out


def cookie_values(headers: HeaderLookup, name: str) -> list[str]:
    """Every value of the cookie `name` in the `Cookie` header lines, surrounding double quotes
    removed."""
    out = []
    for line in headers.getall("cookie"):
        for pair in line.split(";"):
            key, sep, value = pair.strip().partition("=")
            if sep and key == name:
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                out.append(value)
    return out


def api_key(request: CredentialSource, sources: Sequence[KeySource]) -> str:
    """The API key of a request: the first non-empty value in `sources` order ('' for none)."""
    for source in sources:
        if source.kind is SourceKind.HEADER:
            lines = request.headers.getall(source.name)
            value = lines[0] if lines else ""
            if value.startswith(BEARER):
                value = value[len(BEARER):]
        elif source.kind is SourceKind.PARAM:
            values = query_values(request.raw_path, source.name)
            value = values[0] if values else ""
        else:
            cookies = cookie_values(request.headers, source.name)
            value = cookies[0] if cookies else ""
        if value:
            return value
    return ""


def jwt_tokens(request: CredentialSource, sources: Sequence[KeySource]) -> list[str]:
    """Every token the request carries in `sources` (empty: the JWT is missing)."""
    tokens = []
    for source in sources:
        if source.kind is SourceKind.HEADER:
            for line in request.headers.getall(source.name):
                if source.prefix:
                    at = line.find(source.prefix)
                    if at < 0:
                        continue
                    line = _from_token_start(line, at + len(source.prefix))
                tokens.append(line)
        elif source.kind is SourceKind.PARAM:
            tokens.extend(query_values(request.raw_path, source.name)[:1])
        else:
            tokens.extend(cookie_values(request.headers, source.name)[:1])
    return tokens


def _from_token_start(value: str, after: int) -> str:
    """From the first base64url (or dot) character at or after `after`; the whole value when
    there is none (Envoy's extractor)."""
    found = _JWT_START.search(value, after)
    return value[found.start():] if found else value


def without_params(raw_path: str, names: Iterable[str]) -> str:
    """`raw_path` with every query parameter in `names` removed (the rest kept as sent)."""
    path, mark, query = raw_path.partition("?")
    if not mark:
        return raw_path
    gone = set(names)
    kept = [part for part in query.split("&")
            if unquote(part.partition("=")[0]) not in gone]
    return path + ("?" + "&".join(kept) if kept else "")


def without_cookies(lines: list[tuple[str, str]], names: Iterable[str]) -> list[tuple[str, str]]:
    """Header lines with the cookies in `names` removed from every `Cookie` line (a line left
    empty is dropped)."""
    gone = set(names)
    out = []
    for name, value in lines:
        if name.lower() != "cookie":
            out.append((name, value))
            continue
        kept = [pair.strip() for pair in value.split(";")
                if pair.strip() and pair.strip().partition("=")[0] not in gone]
        if kept:
            out.append((name, "; ".join(kept)))
    return out


def redact_params(raw_path: str, names: Iterable[str]) -> str:
    """`raw_path` with the values of the query parameters in `names` replaced by `REDACTED`
    (for logs: a credential sent in the query string is not written down)."""
    path, mark, query = raw_path.partition("?")
    if not mark:
        return raw_path
    hidden = set(names)
    parts = []
    for part in query.split("&"):
        key, sep, _ = part.partition("=")
        parts.append(f"{key}=REDACTED" if sep and unquote(key) in hidden else part)
    return f"{path}?{'&'.join(parts)}"

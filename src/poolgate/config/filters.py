"""Pure request filters of a route rule: RequestHeaderModifier and URLRewrite."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import NamedTuple

from poolgate.config.snapshot import HeaderModifier, RouteDecision, RouteRule, URLRewrite

Headers = Mapping[str, str] | Iterable[tuple[str, str]]


class FilteredRequest(NamedTuple):
    """The request after the rule's filters: path (query kept) and header lines (repeats kept)."""

    path: str
    headers: list[tuple[str, str]]


def rewrite_prefix(path: str, prefix: str, replacement: str) -> str:
    """Replace the matched path `prefix` (whole segments, no trailing slash) with `replacement`."""
    rest = path if prefix == "/" else path[len(prefix):]
    result = replacement.rstrip("/") + rest
    return result or "/"


def rewrite_path(rewrite: URLRewrite, matched_prefix: str | None, path: str) -> str:
    """The path after a URLRewrite; a `?query` suffix is kept as it was."""
    base, mark, query = path.partition("?")
    if rewrite.full_path is not None:
        base = rewrite.full_path
    elif rewrite.prefix_replacement is not None and matched_prefix is not None:
        base = rewrite_prefix(base, matched_prefix, rewrite.prefix_replacement)
    return base + mark + query


def _pairs(headers: Headers) -> list[tuple[str, str]]:
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def modify_headers(modifier: HeaderModifier, headers: Headers) -> list[tuple[str, str]]:
    """Header lines after RequestHeaderModifier (names compared case-insensitively).

    `set` replaces every line of that name, `add` appends a line (equivalent to joining the
    values with a comma), `remove` drops every line of that name.
    """
    out = _pairs(headers)
    for name, value in modifier.set:
        low = name.lower()
        out = [(n, v) for n, v in out if n.lower() != low]
        out.append((name, value))
    out.extend(modifier.add)
    if modifier.remove:
        gone = {name.lower() for name in modifier.remove}
        out = [(n, v) for n, v in out if n.lower() not in gone]
    return out


def apply_request_filters(
    rule: RouteRule, decision: RouteDecision, path: str, headers: Headers
) -> FilteredRequest:
    """Apply the rule's filters to a request; returns new values, the inputs are not changed.

    `path` may carry a `?query`, which is preserved. URLRewrite's hostname replaces the `host`
    header (the original goes in `x-forwarded-host`); ReplacePrefixMatch replaces the prefix the route matched (`decision.matched_prefix`).
    """
    lines = (modify_headers(rule.header_modifier, headers)
             if rule.header_modifier is not None else _pairs(headers))
    new_path = path
    rewrite = rule.url_rewrite
    if rewrite is not None:
        new_path = rewrite_path(rewrite, decision.matched_prefix, path)
        if rewrite.hostname is not None:
            original = next((v for n, v in lines if n.lower() == "host"), None)
            lines = [(n, v) for n, v in lines if n.lower() != "host"]
            lines.append(("host", rewrite.hostname))
            if original is not None:
                # As Envoy Gateway does for a hostname rewrite: the server learns the original.
                lines.append(("x-forwarded-host", original))
    return FilteredRequest(new_path, lines)

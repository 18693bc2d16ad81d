"""HTTPRoute request matching: compiled matches, hostnames, and Gateway API precedence."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

PathType = Literal["Exact", "PathPrefix", "RegularExpression"]

# Lower sorts first. Envoy Gateway orders Exact, then RegularExpression, then PathPrefix;
# the Gateway API leaves regex placement to the implementation.
_PATH_RANK: dict[str, int] = {"Exact": 0, "RegularExpression": 1, "PathPrefix": 2}


@dataclass(frozen=True, slots=True)
class ValueMatch:
    """A header or query parameter condition: exact value, or a full-match regex."""

    name: str
    value: str
    regex: re.Pattern[str] | None = None

    def test(self, actual: str | None) -> bool:
        """Whether `actual` (None when the header/parameter is absent) satisfies the condition."""
        if actual is None:
            return False
        if self.regex is not None:
            return self.regex.fullmatch(actual) is not None
        return actual == self.value


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """One compiled `matches[]` entry; all of its conditions must hold."""

    path_type: PathType = "PathPrefix"
    path: str = "/"
    path_regex: re.Pattern[str] | None = None
    method: str | None = None
    headers: tuple[ValueMatch, ...] = ()  # names lower-cased
    query: tuple[ValueMatch, ...] = ()
    _prefix_slash: str = field(default="", repr=False, compare=False)

    @classmethod
    def build(
        cls,
        path_type: PathType = "PathPrefix",
        path: str = "/",
        method: str | None = None,
        headers: tuple[ValueMatch, ...] = (),
        query: tuple[ValueMatch, ...] = (),
    ) -> RouteMatch:
        """Compile a match; raises ValueError (re.error) for a bad regular expression."""
        regex = re.compile(path) if path_type == "RegularExpression" else None
        if path_type == "PathPrefix" and path != "/":
            # The spec ignores a trailing slash on the prefix: /abc/ matches /abc.
            path = path.rstrip("/") or "/"
        headers = tuple(
            ValueMatch(h.name.lower(), h.value, h.regex) for h in headers
        )
        return cls(path_type, path, regex, method, headers, query, path + "/")

    def matches(  # noqa: C901 - one flat function: it runs per candidate route per request
        self, method: str, path: str, headers: Mapping[str, str], query: Mapping[str, str]
    ) -> bool:
        """Whether a request satisfies every condition (headers keyed lower-case)."""
        if self.path_type == "PathPrefix":
            p = self.path
            if p != "/" and path != p and not path.startswith(self._prefix_slash):
                return False
        elif self.path_type == "Exact":
            if path != self.path:
                return False
        elif self.path_regex is not None and self.path_regex.fullmatch(path) is None:
            return False
        if self.method is not None and method != self.method:
            return False
        # Plain loops, not all(<generator>): this runs per candidate per request.
        if self.headers:
            for h in self.headers:
                if not h.test(headers.get(h.name)):
                    return False
        if self.query:
            for q in self.query:
                if not q.test(query.get(q.name)):
                    return False
        return True

    @property
    def first_segment(self) -> str | None:
        """The first path segment every matching path has, or None when it can vary."""
        if self.path_type == "RegularExpression" or self.path == "/":
            return None
        return first_segment(self.path)

    @property
    def matched_prefix(self) -> str | None:
        """The prefix a PathPrefix match matched (for URLRewrite ReplacePrefixMatch)."""
        return self.path if self.path_type == "PathPrefix" else None

    def precedence(self) -> tuple[int, int, int, int, int]:
        """Sort key, most specific first: path kind, path length, method, #headers, #query."""
        return (
            _PATH_RANK[self.path_type],
            -len(self.path),
            0 if self.method is not None else 1,
            -len(self.headers),
            -len(self.query),
        )


def first_segment(path: str) -> str:
    """`v1` for `/v1/chat/completions`, `` for `/`."""
    end = path.find("/", 1)
    return path[1:end] if end > 0 else path[1:]


def normalize_host(host: str) -> str:
    """The `Host` header for matching: lower case, without port or trailing dot."""
    if ":" in host:
        if host.startswith("["):
            end = host.find("]")
            if end >= 0:
                host = host[: end + 1]
        elif host.count(":") == 1:
            host = host[: host.index(":")]
    if host.endswith("."):
        host = host.rstrip(".")
    return host.lower()


def hostname_matches(pattern: str, host: str) -> bool:
    """Whether `host` (normalized) matches a hostname or `*.suffix` wildcard (1+ labels)."""
    if pattern.startswith("*."):
        suffix = pattern[1:]
        return host.endswith(suffix) and len(host) > len(suffix)
    return host == pattern


def intersect_hostnames(listener: str | None, route: str) -> str | None:
    """The hostname both a listener and a route accept, the more specific one; None if disjoint."""
    if listener is None:
        return route
    if listener == route:
        return route
    lw, rw = listener.startswith("*."), route.startswith("*.")
    if lw and not rw:
        return route if hostname_matches(listener, route) else None
    if rw and not lw:
        return listener if hostname_matches(route, listener) else None
    if lw and rw:
        # Both wildcards: the longer suffix is the narrower set, if it lies inside the other.
        if route[1:].endswith(listener[1:]):
            return route
        if listener[1:].endswith(route[1:]):
            return listener
    return None

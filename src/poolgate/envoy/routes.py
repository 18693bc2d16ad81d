"""Route configuration: one virtual host per hostname group of a listener port, one Envoy route
per HTTPRoute match, in the precedence `Snapshot.route` uses.

The snapshot's `RouteTable` already holds the candidates in order, grouped by hostname (exact,
`*.suffix`, any), which is how Envoy chooses a virtual host too; inside a group the candidates
are indexed by first path segment, and `ordered_candidates` puts them back into one list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from poolgate.config.matching import RouteMatch, ValueMatch
from poolgate.config.snapshot import Backend, Candidate, CandidateGroup, RouteRule, RouteTable
from poolgate.envoy.clusters import INVALID_CLUSTER
from poolgate.envoy.model import Config, Notes, duration, typed

PREVIOUS_HOSTS = "envoy.retry_host_predicates.previous_hosts"


@dataclass(frozen=True, slots=True)
class PerRoute:
    """The per-route filter configs a backend (or the whole rule) needs, by filter name."""

    for_backend: Callable[[Backend], Config]  # filter name -> typed_per_filter_config value
    for_rule: Callable[[RouteRule], Config]
    timeout: Callable[[RouteRule], float | None]  # the route timeout (None: none)
    refusal: Callable[[RouteRule], Config | None]  # a direct response instead of routing


def ordered_candidates(group: CandidateGroup) -> list[Candidate]:
    """A group's candidates in one precedence order.

    `by_segment[s]` lists, in order, the candidates of first segment `s` and those that can
    match any path (`any_segment`); candidates of two different segments never match the same
    path, so any order between them is right. Each segment's own candidates are inserted just
    before the next any-path candidate that follows them in that segment's list (segments in
    name order, so that the output is the same from run to run).
    """
    merged: list[Candidate] = list(group.any_segment)
    for _, listed in sorted(group.by_segment.items()):
        pending: list[Candidate] = []
        for candidate in listed:
            if candidate.match.first_segment is None:
                if pending:
                    at = next(i for i, c in enumerate(merged) if c is candidate)
                    merged[at:at] = pending
                    pending = []
            else:
                pending.append(candidate)
        merged.extend(pending)
    return merged


def _string_match(m: ValueMatch) -> Config:
    if m.regex is not None:
        return {"safe_regex": {"regex": m.value}}
    return {"exact": m.value}


def route_match(match: RouteMatch) -> Config:
    """Envoy's `match` for a compiled HTTPRoute match (PathPrefix matches whole segments)."""
    out: Config
    if match.path_type == "Exact":
        out = {"path": match.path}
    elif match.path_type == "RegularExpression":
        out = {"safe_regex": {"regex": match.path}}
    elif match.path == "/":
        out = {"prefix": "/"}
    else:
        out = {"path_separated_prefix": match.path}
    headers = [{"name": h.name, "string_match": _string_match(h)} for h in match.headers]
    if match.method is not None:
        headers.insert(0, {"name": ":method", "string_match": {"exact": match.method}})
    if headers:
        out["headers"] = headers
    if match.query:
        out["query_parameters"] = [{"name": q.name, "string_match": _string_match(q)}
                                   for q in match.query]
    return out


def retry_policy(rule: RouteRule) -> Config | None:
    """`retry` of the rule's policy (Envoy Gateway's retry_on, previous-hosts predicate) and
    the per-attempt timeout (`perRetry.timeout`, else `timeouts.backendRequest`)."""
    policy = rule.policy
    spec = policy.retry if policy is not None else None
    per_try = spec.per_retry_timeout if spec is not None and spec.per_retry_timeout else None
    per_try = per_try or rule.backend_request_timeout
    if spec is None or not spec.triggers or spec.num_retries == 0:
        return {"num_retries": 0, "per_try_timeout": duration(per_try)} if per_try else None
    out: Config = {
        "retry_on": ",".join(sorted(t.value for t in spec.triggers)),
        "num_retries": spec.num_retries,
        "retry_host_predicate": [{"name": PREVIOUS_HOSTS, "typed_config": typed(
            "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate")}],
        "host_selection_retry_max_attempts": 5,
        "retry_back_off": {"base_interval": duration(spec.backoff_base),
                           "max_interval": duration(spec.backoff_max or 10 * spec.backoff_base)},
    }
    if spec.http_status_codes:
        out["retriable_status_codes"] = sorted(spec.http_status_codes)
    if per_try:
        out["per_try_timeout"] = duration(per_try)
    return out


def _rewrite(rule: RouteRule, match: RouteMatch, action: Config) -> None:
    """URLRewrite on one Envoy route (its own matched prefix), as Envoy Gateway writes it."""
    rewrite = rule.url_rewrite
    if rewrite is None:
        return
    if rewrite.hostname is not None:
        action["host_rewrite_literal"] = rewrite.hostname
        action["append_x_forwarded_host"] = True
    if rewrite.full_path is not None:
        action["regex_rewrite"] = {"pattern": {"regex": "^/.*$"},
                                   "substitution": rewrite.full_path}
    elif rewrite.prefix_replacement is not None and match.matched_prefix is not None:
        replacement = rewrite.prefix_replacement.rstrip("/")
        prefix = match.matched_prefix
        if prefix == "/":
            # Envoy would replace only the `/`: `/x` -> `/v1x`; the Gateway API wants `/v1/x`.
            action["regex_rewrite"] = {"pattern": {"regex": "^/"},
                                       "substitution": replacement + "/"}
        elif not replacement:
            # `/foo/bar` -> `/bar` and `/foo` -> `/` (a plain prefix_rewrite would give `//bar`).
            action["regex_rewrite"] = {"pattern": {"regex": f"^{re.escape(prefix)}/*"},
                                       "substitution": "/"}
        else:
            action["prefix_rewrite"] = replacement


def _header_edits(rule: RouteRule, route: Config, action: Config) -> None:
    """RequestHeaderModifier: `set` overwrites, `add` appends, `remove` deletes; `Host` can
    only be rewritten (Envoy refuses to edit it as a header)."""
    modifier = rule.header_modifier
    if modifier is None:
        return
    add: list[Config] = []
    for pairs, how in ((modifier.set, "OVERWRITE_IF_EXISTS_OR_ADD"),
                       (modifier.add, "APPEND_IF_EXISTS_OR_ADD")):
        for name, value in pairs:
            if name.lower() == "host":
                action["host_rewrite_literal"] = value
                continue
            add.append({"header": {"key": name, "value": value}, "append_action": how})
    if add:
        route["request_headers_to_add"] = add
    if modifier.remove:
        route["request_headers_to_remove"] = list(modifier.remove)


def _destination(rule: RouteRule, subject: str, per_route: PerRoute,
                 notes: Notes) -> Config | None:
    """`cluster` or `weighted_clusters` of a rule; None when no backend can take traffic."""
    live = [b for b in rule.backends if b.weight > 0]
    valid = [b for b in live if b.error is None]
    if not valid:
        return None
    for b in live:
        if b.error is not None:
            notes.add(subject, f"backendRef {b.kind} {b.namespace}/{b.name}",
                      f"invalid ({b.error}); Envoy answers 503 `no healthy upstream` for its "
                      "share of the traffic where poolgate answers 500")
    if len(live) == 1:
        return {"cluster": valid[0].key}
    clusters: list[Config] = []
    for b in live:
        entry: Config = {"name": INVALID_CLUSTER if b.error is not None else b.key,
                         "weight": b.weight}
        filters = per_route.for_backend(b) if b.error is None else {}
        if filters:
            entry["typed_per_filter_config"] = filters
        clusters.append(entry)
    return {"weighted_clusters": {"clusters": clusters}}


def envoy_route(candidate: Candidate, per_route: PerRoute, notes: Notes) -> Config:
    """The Envoy route of one HTTPRoute match."""
    decision = candidate.decision
    rule, match = decision.rule, candidate.match
    index = next(i for i, m in enumerate(rule.matches) if m is match)
    subject = f"HTTPRoute {decision.route.key} rule {rule.index}"
    route: Config = {"name": f"{decision.route.key}/rule/{rule.index}/match/{index}",
                     "match": route_match(match)}
    refusal = per_route.refusal(rule)
    if refusal is not None:
        route["direct_response"] = refusal
        return route
    destination = _destination(rule, subject, per_route, notes)
    if destination is None:
        # As Envoy Gateway: a rule with no valid backendRef answers 500.
        route["direct_response"] = {"status": 500}
        return route
    action: Config = dict(destination)
    timeout = per_route.timeout(rule)
    action["timeout"] = duration(timeout) if timeout else "0s"
    retry = retry_policy(rule)
    if retry is not None:
        action["retry_policy"] = retry
    _rewrite(rule, match, action)
    _header_edits(rule, route, action)
    route["route"] = action
    filters = dict(per_route.for_rule(rule))
    if "cluster" in destination:
        only = next(b for b in rule.backends if b.key == destination["cluster"])
        filters.update(per_route.for_backend(only))
    if filters:
        route["typed_per_filter_config"] = filters
    return route


def virtual_hosts(port: int, table: RouteTable, per_route: PerRoute,
                  notes: Notes) -> list[Config]:
    """The virtual hosts of one listener port: exact hostnames, `*.suffix` wildcards (Envoy
    prefers the longest, as poolgate does), then any host."""
    groups: list[tuple[str, Sequence[str], CandidateGroup]] = [
        (host, [host], group) for host, group in sorted(table.exact.items())
    ]
    groups += [(f"*{suffix}", [f"*{suffix}"], group) for suffix, group in table.wildcards]
    if table.default.any_segment or table.default.by_segment:
        groups.append(("*", ["*"], table.default))
    return [
        {"name": f"{port}/{name}", "domains": list(domains),
         "routes": [envoy_route(c, per_route, notes) for c in ordered_candidates(group)]}
        for name, domains, group in groups
    ]

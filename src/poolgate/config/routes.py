"""HTTPRoutes compiled: rules (matches, filters, backends), attachment to listeners, route tables."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from poolgate.api import gateway
from poolgate.api.kinds import GATEWAY_GROUP
from poolgate.api.loader import LoadedResource
from poolgate.config._report import Report
from poolgate.config.backends import resolve_backend
from poolgate.config.matching import RouteMatch, ValueMatch, intersect_hostnames
from poolgate.config.outcomes import (
    ACCEPTED,
    NO_MATCHING_LISTENER_HOSTNAME,
    NO_MATCHING_PARENT,
    NOT_ALLOWED_BY_LISTENERS,
    ParentOutcome,
)
from poolgate.config.policy import TrafficPolicy
from poolgate.config.snapshot import (
    Backend,
    Candidate,
    CandidateGroup,
    HeaderModifier,
    Listener,
    Route,
    RouteDecision,
    RouteRule,
    RouteTable,
    URLRewrite,
)
from poolgate.core.pools import Pool
from poolgate.discovery.local import LocalEndpointSource

SUPPORTED_FILTERS = ("RequestHeaderModifier", "URLRewrite")


@dataclass(frozen=True, slots=True)
class GatewayListeners:
    """A Gateway and the listeners poolgate serves for it (spec listener, runtime listener)."""

    loaded: LoadedResource
    resource: gateway.Gateway
    listeners: tuple[tuple[gateway.GatewayListener, Listener], ...]


@dataclass(frozen=True, slots=True)
class Attachment:
    """A route attached to a listener; `hostnames` None means any host."""

    gateway_key: str
    listener: Listener
    hostnames: tuple[str, ...] | None


def _allows(spec: gateway.GatewayListener, gw: gateway.Gateway, route_ns: str) -> str | None:
    """Why a listener refuses HTTPRoutes from `route_ns`, or None when it accepts them."""
    allowed = spec.allowed_routes
    if allowed.kinds is not None and not any(
        k.group == GATEWAY_GROUP and k.kind == "HTTPRoute" for k in allowed.kinds
    ):
        return f"listener {spec.name} does not allow HTTPRoute kinds"
    if allowed.namespaces.from_ == "Same" and route_ns != gw.namespace:
        return f"listener {spec.name} only allows routes from namespace {gw.namespace}"
    return None


def attach_route(
    loaded: LoadedResource, gateways: Mapping[str, GatewayListeners], report: Report,
    foreign: frozenset[str] = frozenset(),
) -> list[Attachment]:
    """The listeners a route attaches to, reporting every parentRef that does not attach (in
    words, and as a `ParentOutcome` for the route's status). `foreign`: Gateways of another
    controller's class; parentRefs to them are none of this build's business."""
    route = loaded.resource
    assert isinstance(route, gateway.HTTPRoute)
    if not route.spec.parent_refs:
        report.warning(loaded, "no parentRefs: the route is not attached to any Gateway")
        return []
    out: list[Attachment] = []
    outcomes = report.outcomes.route_parents.setdefault(route.key, [])
    for i, ref in enumerate(route.spec.parent_refs):
        where = f"spec.parentRefs[{i}]"
        if ref.group != GATEWAY_GROUP or ref.kind != "Gateway":
            report.warning(loaded, f"{where}: parent kind {ref.kind} in group {ref.group} is not "
                                   "supported; only Gateways are, so this parentRef is ignored")
            continue
        gw_key = f"{ref.namespace or route.namespace}/{ref.name}"
        if gw_key in foreign:
            continue
        found = gateways.get(gw_key)
        if found is None:
            report.warning(loaded, f"{where}: Gateway {gw_key} not found; the route is not "
                                   "attached to it")
            continue
        found_attachments, reasons = _attach_to(loaded, where, ref, found, report)
        out.extend(found_attachments)
        attached = len(found_attachments)
        if attached == 0:
            detail = "; ".join(m for _, m in reasons) or "no listener matches sectionName/port"
            report.warning(loaded, f"{where}: not attached to Gateway {gw_key}: {detail}")
            reason = reasons[0][0] if reasons else NO_MATCHING_PARENT
            outcomes.append(ParentOutcome(i, gw_key, False, reason, detail))
        else:
            outcomes.append(ParentOutcome(i, gw_key, True, ACCEPTED, "Route is accepted"))
    return out


def _attach_to(loaded: LoadedResource, where: str, ref: gateway.ParentReference,
               found: GatewayListeners, report: Report,
               ) -> tuple[list[Attachment], list[tuple[str, str]]]:
    """The listeners of one Gateway a parentRef attaches to, and (reason, message) for each
    listener it names that refused the route."""
    route = loaded.resource
    assert isinstance(route, gateway.HTTPRoute)
    gw_key = found.resource.key
    out: list[Attachment] = []
    reasons: list[tuple[str, str]] = []
    for spec, listener in found.listeners:
        if ref.section_name is not None and spec.name != ref.section_name:
            continue
        if ref.port is not None and spec.port != ref.port:
            continue
        refusal = _allows(spec, found.resource, route.namespace)
        if refusal is not None:
            reasons.append((NOT_ALLOWED_BY_LISTENERS, refusal))
            continue
        if spec.allowed_routes.namespaces.from_ == "Selector":
            report.warning(loaded, f"{where}: listener {spec.name} selects namespaces by "
                                   "label, which cannot be evaluated outside a cluster; "
                                   "the route is allowed")
        hostnames = _attached_hostnames(spec.hostname, route.spec.hostnames)
        if hostnames == ():
            reasons.append((NO_MATCHING_LISTENER_HOSTNAME,
                            f"listener {spec.name} hostname {spec.hostname} matches none "
                            "of the route's hostnames"))
            continue
        out.append(Attachment(gw_key, listener, hostnames))
        report.outcomes.attached[(gw_key, spec.name)] += 1
    return out, reasons


def _attached_hostnames(listener: str | None,
                        route: Sequence[str]) -> tuple[str, ...] | None:
    """The hostnames a route serves on a listener: the intersections of the route's hostnames
    with the listener's (empty: none intersects), or the listener's own when the route names
    none (None: any host)."""
    if route:
        return tuple(dict.fromkeys(
            h for h in (intersect_hostnames(listener, r.lower()) for r in route) if h is not None
        ))
    return (listener,) if listener else None


def _value_matches(
    items: Sequence[gateway.HTTPHeaderMatch | gateway.HTTPQueryParamMatch],
) -> tuple[ValueMatch, ...]:
    return tuple(
        ValueMatch(m.name, m.value, re.compile(m.value) if m.type == "RegularExpression" else None)
        for m in items
    )


def compile_matches(loaded: LoadedResource, index: int, rule: gateway.HTTPRouteRule,
                    report: Report) -> tuple[RouteMatch, ...]:
    """A rule's matches (PathPrefix `/` when it has none); bad regular expressions are errors."""
    if not rule.matches:
        return (RouteMatch.build(),)
    out = []
    for j, m in enumerate(rule.matches):
        try:
            out.append(RouteMatch.build(
                m.path.type, m.path.value, m.method, _value_matches(m.headers),
                _value_matches(m.query_params),
            ))
        except re.error as e:
            report.error(loaded, f"spec.rules[{index}].matches[{j}]: invalid regular "
                                 f"expression: {e}")
    return tuple(out)


def compile_filters(
    loaded: LoadedResource, index: int, rule: gateway.HTTPRouteRule,
    matches: Sequence[RouteMatch], report: Report,
) -> tuple[HeaderModifier | None, URLRewrite | None, str | None]:
    """(header modifier, URL rewrite, unsupported-filter message or None)."""
    modifier: HeaderModifier | None = None
    rewrite: URLRewrite | None = None
    unsupported: str | None = None
    where = f"spec.rules[{index}].filters"
    for f in rule.filters:
        if f.type == "RequestHeaderModifier" and f.request_header_modifier is not None:
            if modifier is not None:
                report.error(loaded, f"{where}: RequestHeaderModifier may appear only once")
            h = f.request_header_modifier
            modifier = HeaderModifier(
                set=tuple((x.name, x.value) for x in h.set),
                add=tuple((x.name, x.value) for x in h.add),
                remove=tuple(h.remove),
            )
        elif f.type == "URLRewrite" and f.url_rewrite is not None:
            if rewrite is not None:
                report.error(loaded, f"{where}: URLRewrite may appear only once")
            u = f.url_rewrite
            path = u.path
            if (path is not None and path.type == "ReplacePrefixMatch"
                    and any(m.path_type != "PathPrefix" for m in matches)):
                report.error(loaded, f"{where}: URLRewrite ReplacePrefixMatch needs every match "
                                     "of the rule to be a PathPrefix match")
            rewrite = URLRewrite(
                hostname=u.hostname,
                full_path=path.replace_full_path if path and path.type == "ReplaceFullPath" else None,
                prefix_replacement=(path.replace_prefix_match
                                    if path and path.type == "ReplacePrefixMatch" else None),
            )
        else:
            unsupported = (f"filter type {f.type} is not supported by poolgate (supported: "
                           f"{', '.join(SUPPORTED_FILTERS)})")
            report.warning(loaded, f"{where}: {unsupported}; requests matching this rule get 500")
    return modifier, rewrite, unsupported


def compile_rule(
    loaded: LoadedResource,
    index: int,
    rule: gateway.HTTPRouteRule,
    pools: Mapping[str, Pool],
    source: LocalEndpointSource,
    grants: Sequence[gateway.ReferenceGrant],
    policy: TrafficPolicy | None,
    report: Report,
    *, in_cluster: bool = False,
) -> RouteRule:
    """One HTTPRoute rule resolved; problems go to `report` (`in_cluster`: as for
    `resolve_backend`)."""
    route = loaded.resource
    assert isinstance(route, gateway.HTTPRoute)
    matches = compile_matches(loaded, index, rule, report)
    modifier, rewrite, unsupported = compile_filters(loaded, index, rule, matches, report)
    backends: list[Backend] = []
    for j, ref in enumerate(rule.backend_refs):
        key = f"httproute/{route.namespace}/{route.name}/rule/{index}/backend/{j}"
        where = f"spec.rules[{index}].backendRefs[{j}]"
        if unsupported is not None:
            backends.append(Backend(ref.kind, ref.name, ref.namespace or route.namespace,
                                    ref.weight, key, error=unsupported))
            continue
        backend = resolve_backend(ref, key, route.namespace, pools, source, grants,
                                  in_cluster=in_cluster)
        if backend.error is not None:
            report.warning(loaded, f"{where}: {backend.error}; requests sent to it get 500")
        if ref.filters:
            report.warning(loaded, f"{where}.filters: per-backend filters are not supported "
                                   "and are ignored")
        backends.append(backend)
    if not rule.backend_refs:
        report.warning(loaded, f"spec.rules[{index}] has no backendRefs; matching requests get 500")
    timeouts = rule.timeouts
    request = timeouts.request if timeouts else None
    backend_request = timeouts.backend_request if timeouts else None
    if request and backend_request and backend_request > request:
        report.error(loaded, f"spec.rules[{index}].timeouts.backendRequest must not be longer "
                             "than timeouts.request")
    return RouteRule(
        index=index, matches=matches, backends=tuple(backends), header_modifier=modifier,
        url_rewrite=rewrite, request_timeout=request or None, policy=policy,
        backend_request_timeout=backend_request or None, name=rule.name,
    )


@dataclass(frozen=True, slots=True)
class PlacedRoute:
    """A compiled route with its order among routes and where it is attached."""

    route: Route
    order: tuple[str, int]  # (creationTimestamp or "", load position)
    attachments: tuple[Attachment, ...]


def build_tables(placed: Sequence[PlacedRoute]) -> dict[int, RouteTable]:
    """Per listener port: candidates grouped by hostname, each group in precedence order."""
    groups: dict[int, dict[str, list[tuple[tuple[object, ...], Candidate]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for p in placed:
        route = p.route
        seen: set[tuple[int, str]] = set()
        for att in p.attachments:
            port = att.listener.port
            for host_key in att.hostnames if att.hostnames is not None else ("",):
                if (port, host_key) in seen:
                    continue
                seen.add((port, host_key))
                for rule in route.rules:
                    for m_index, match in enumerate(rule.matches):
                        order = (*match.precedence(), *p.order, route.key, rule.index, m_index)
                        decision = RouteDecision(route, rule, match.matched_prefix)
                        groups[port][host_key].append((order, Candidate(match, decision)))
    tables: dict[int, RouteTable] = {}
    for port, by_host in groups.items():
        ordered = {
            h: CandidateGroup.of(tuple(c for _, c in sorted(items, key=lambda x: x[0])))
            for h, items in by_host.items()
        }
        exact = {h: g for h, g in ordered.items() if h and not h.startswith("*.")}
        wild = sorted(
            ((h[1:], g) for h, g in ordered.items() if h.startswith("*.")),
            key=lambda x: -len(x[0]),
        )
        default = ordered.get("")
        tables[port] = (RouteTable(exact, tuple(wild)) if default is None
                        else RouteTable(exact, tuple(wild), default))
    return tables

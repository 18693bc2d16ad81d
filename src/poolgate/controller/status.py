"""The `status` each object should have, as Gateway API and the Inference Extension define it.

Plain functions: from the objects read, the scope, the build's outcomes and the objects left out
for errors, to the desired status of every GatewayClass, Gateway, HTTPRoute and InferencePool
poolgate answers for. Entries other controllers own (HTTPRoute `status.parents[]` of another
`controllerName`, InferencePool parents that are not poolgate's Gateways) are kept as they are.
`lastTransitionTime` moves only when a condition's status changes, so an unchanged state gives an
identical status and nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from poolgate.config.outcomes import ACCEPTED, Outcomes
from poolgate.controller.scope import (
    GATEWAY_GROUP,
    Scope,
    key_of,
    namespace_of,
    route_gateways,
    route_pools,
)
from poolgate.kube.resources import INFERENCE_POOLS, INFERENCE_POOLS_X

# Reasons used beyond the standard ones of config/outcomes.py.
INVALID = "Invalid"
UNSUPPORTED_VALUE = "UnsupportedValue"
LISTENERS_NOT_VALID = "ListenersNotValid"
HTTP_ROUTE_NOT_ACCEPTED = "HTTPRouteNotAccepted"
RESOLVED_REFS = "ResolvedRefs"
PROGRAMMED = "Programmed"
NO_CONFLICTS = "NoConflicts"
PENDING = "Pending"

_MESSAGE_MAX = 1024  # metav1.Condition.message is at most 32768 bytes; keep statuses small


@dataclass(frozen=True, slots=True)
class BuildState:
    """What the status is derived from, besides the objects."""

    scope: Scope
    outcomes: Outcomes
    invalid: Mapping[tuple[str, str], Sequence[str]]  # (kind, namespace/name) -> its errors
    controller_name: str  # written as `controllerName` in route and pool parents
    addresses: Sequence[Mapping[str, str]] = ()  # Gateway status.addresses
    programmed: bool = True  # the listeners are bound and serving


def condition(type_: str, ok: bool, reason: str, message: str, generation: int,
              ) -> dict[str, Any]:
    """A metav1.Condition without its lastTransitionTime (added by `with_transition_times`)."""
    return {"type": type_, "status": "True" if ok else "False", "reason": reason,
            "message": message[:_MESSAGE_MAX], "observedGeneration": generation}


def with_transition_times(new: Iterable[dict[str, Any]], old: Any, now: str,
                          ) -> list[dict[str, Any]]:
    """`new` conditions with `lastTransitionTime`: the old one where the condition's status did
    not change, else `now`."""
    previous = {c.get("type"): c for c in old if isinstance(c, Mapping)} \
        if isinstance(old, list) else {}
    out = []
    for c in new:
        before = previous.get(c["type"])
        keep = before is not None and before.get("status") == c["status"] \
            and before.get("lastTransitionTime")
        out.append({**c, "lastTransitionTime": before["lastTransitionTime"] if keep and before
                    else now})
    return out


def _generation(obj: Mapping[str, Any]) -> int:
    meta = obj.get("metadata") or {}
    value = meta.get("generation", 0)
    return value if isinstance(value, int) else 0


def _status(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    status = obj.get("status")
    return status if isinstance(status, Mapping) else {}


def _invalid_message(errors: Sequence[str]) -> str:
    return "; ".join(errors) if errors else "the object is invalid"


def desired_statuses(objects: Iterable[Mapping[str, Any]], state: BuildState, now: str,
                     ) -> list[tuple[Mapping[str, Any], dict[str, Any]]]:
    """(object, desired status) for every object whose status poolgate writes; the status
    holds only what poolgate sets plus the entries of others it keeps."""
    out: list[tuple[Mapping[str, Any], dict[str, Any]]] = []
    routes_by_key: dict[str, Mapping[str, Any]] = {}
    pools: list[Mapping[str, Any]] = []
    for obj in objects:
        kind = obj.get("kind")
        if kind == "GatewayClass":
            if str((obj.get("metadata") or {}).get("name")) in state.scope.classes:
                out.append((obj, _gateway_class_status(obj, now)))
        elif kind == "Gateway":
            if key_of(obj) in state.scope.gateways:
                out.append((obj, _gateway_status(obj, state, now)))
        elif kind == "HTTPRoute":
            routes_by_key[key_of(obj)] = obj
            status = _route_status(obj, state, now)
            if status is not None:
                out.append((obj, status))
        elif kind == "InferencePool":
            pools.append(obj)
    for pool in pools:
        status = _pool_status(pool, routes_by_key, state, now)
        if status is not None:
            out.append((pool, status))
    return out


def _gateway_class_status(obj: Mapping[str, Any], now: str) -> dict[str, Any]:
    conditions = [condition("Accepted", True, ACCEPTED,
                            "poolgate serves the Gateways of this class", _generation(obj))]
    return {**_status(obj), "conditions": with_transition_times(
        conditions, _status(obj).get("conditions"), now)}


def _gateway_status(obj: Mapping[str, Any], state: BuildState, now: str) -> dict[str, Any]:
    key = key_of(obj)
    generation = _generation(obj)
    old = _status(obj)
    errors = state.invalid.get(("Gateway", key))
    if errors is not None:
        message = _invalid_message(errors)
        reason = LISTENERS_NOT_VALID if "listener" in message else INVALID
        conditions = [condition("Accepted", False, reason, message, generation),
                      condition("Programmed", False, INVALID, message, generation)]
        return {"conditions": with_transition_times(conditions, old.get("conditions"), now)}
    listeners = state.outcomes.listeners.get(key, [])
    served = any(lo.accepted for lo in listeners)
    programmed = state.programmed and served
    conditions = [
        condition("Accepted", True, ACCEPTED, "Gateway is accepted", generation),
        condition("Programmed", programmed, PROGRAMMED if programmed else PENDING,
                  "Gateway is serving" if programmed else
                  "no HTTP listener is serving yet" if served else "no listener is supported",
                  generation),
    ]
    old_listeners = {lst.get("name"): lst for lst in old.get("listeners") or []
                     if isinstance(lst, Mapping)}
    listener_status = []
    for lo in listeners:
        attached = state.outcomes.attached.get((key, lo.name), 0)
        ok = lo.accepted and state.programmed
        listener_conditions = [
            condition("Accepted", lo.accepted, lo.reason, lo.message, generation),
            condition("Programmed", ok, PROGRAMMED if ok else INVALID if not lo.accepted
                      else PENDING, "Listener is serving" if ok else lo.message, generation),
            condition("ResolvedRefs", True, RESOLVED_REFS, "References are resolved",
                      generation),
            condition("Conflicted", False, NO_CONFLICTS, "No conflicts", generation),
        ]
        listener_status.append({
            "name": lo.name,
            "supportedKinds": [{"group": GATEWAY_GROUP, "kind": "HTTPRoute"}] if lo.accepted
            else [],
            "attachedRoutes": attached,
            "conditions": with_transition_times(
                listener_conditions, (old_listeners.get(lo.name) or {}).get("conditions"), now),
        })
    status: dict[str, Any] = {
        "conditions": with_transition_times(conditions, old.get("conditions"), now),
        "listeners": listener_status,
    }
    if state.addresses:
        status["addresses"] = [dict(a) for a in state.addresses]
    return status


def _parent_ref(ref: Mapping[str, Any]) -> dict[str, Any]:
    """A route's parentRef as echoed in its status (group and kind filled in)."""
    out: dict[str, Any] = {"group": ref.get("group", GATEWAY_GROUP),
                           "kind": ref.get("kind", "Gateway"), "name": ref.get("name", "")}
    for optional in ("namespace", "sectionName", "port"):
        if ref.get(optional) is not None:
            out[optional] = ref[optional]
    return out


def _route_status(obj: Mapping[str, Any], state: BuildState, now: str,
                  ) -> dict[str, Any] | None:
    key = key_of(obj)
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    refs = [r for r in (spec or {}).get("parentRefs") or [] if isinstance(r, Mapping)]
    ours = [(i, r) for i, r in enumerate(refs)
            if (r.get("group", GATEWAY_GROUP), r.get("kind", "Gateway")) == (GATEWAY_GROUP, "Gateway")
            and f"{r.get('namespace') or namespace_of(obj)}/{r.get('name', '')}"
            in state.scope.gateways]
    old = _status(obj)
    old_parents = [p for p in old.get("parents") or [] if isinstance(p, Mapping)]
    others = [p for p in old_parents if p.get("controllerName") != state.controller_name]
    if not ours and len(others) == len(old_parents):
        return None  # not ours, and nothing of ours to remove
    generation = _generation(obj)
    errors = state.invalid.get(("HTTPRoute", key))
    outcomes = {o.index: o for o in state.outcomes.route_parents.get(key, [])}
    ref_problems = state.outcomes.route_refs.get(key, [])
    previous = {_ref_key(p.get("parentRef")): p for p in old_parents
                if p.get("controllerName") == state.controller_name}
    parents = []
    for i, ref in ours:
        if errors is not None:
            conditions = [condition("Accepted", False, UNSUPPORTED_VALUE,
                                    _invalid_message(errors), generation)]
        else:
            outcome = outcomes.get(i)
            if outcome is None:
                continue
            resolved = not ref_problems
            conditions = [
                condition("Accepted", outcome.accepted, outcome.reason, outcome.message,
                          generation),
                condition("ResolvedRefs", resolved,
                          RESOLVED_REFS if resolved else ref_problems[0].reason,
                          "All references are resolved" if resolved
                          else "; ".join(p.message for p in ref_problems), generation),
            ]
        parent_ref = _parent_ref(ref)
        before = previous.get(_ref_key(parent_ref)) or {}
        parents.append({"parentRef": parent_ref, "controllerName": state.controller_name,
                        "conditions": with_transition_times(conditions,
                                                            before.get("conditions"), now)})
    return {**old, "parents": [dict(p) for p in others] + parents}


def _ref_key(ref: Any) -> tuple[Any, ...]:
    if not isinstance(ref, Mapping):
        return ()
    return (ref.get("group", GATEWAY_GROUP), ref.get("kind", "Gateway"), ref.get("namespace"),
            ref.get("name"), ref.get("sectionName"), ref.get("port"))


def _pool_status(pool: Mapping[str, Any], routes: Mapping[str, Mapping[str, Any]],
                 state: BuildState, now: str) -> dict[str, Any] | None:
    key = key_of(pool)
    generation = _generation(pool)
    # Our Gateways that route to this pool: accepted when an accepted route does.
    via: dict[str, bool] = {}
    for route_key, route in routes.items():
        if key not in route_pools(route):
            continue
        outcomes = {o.gateway: o.accepted
                    for o in state.outcomes.route_parents.get(route_key, [])}
        for gw in route_gateways(route):
            if gw in state.scope.gateways:
                accepted = outcomes.get(gw, False) and ("HTTPRoute", route_key) not in state.invalid
                via[gw] = via.get(gw, False) or accepted
    v1 = pool.get("apiVersion") == INFERENCE_POOLS.api_version
    field = "parents" if v1 else "parent"
    assert v1 or pool.get("apiVersion") == INFERENCE_POOLS_X.api_version
    old = _status(pool)
    old_parents = [p for p in old.get(field) or [] if isinstance(p, Mapping)]

    def gateway_of(entry: Mapping[str, Any]) -> str | None:
        ref = entry.get("parentRef") or {}
        if not isinstance(ref, Mapping) or ref.get("kind", "Gateway") != "Gateway":
            return None
        return f"{ref.get('namespace') or namespace_of(pool)}/{ref.get('name', '')}"

    others = [p for p in old_parents if gateway_of(p) not in state.scope.gateways]
    if not via and len(others) == len(old_parents):
        return None
    errors = state.invalid.get(("InferencePool", key))
    previous = {gateway_of(p): p for p in old_parents}
    parents = []
    for gw, accepted in sorted(via.items()):
        if errors is not None:
            conditions = [condition("Accepted", False, INVALID, _invalid_message(errors),
                                    generation)]
        else:
            conditions = [
                condition("Accepted", accepted, ACCEPTED if accepted else HTTP_ROUTE_NOT_ACCEPTED,
                          "InferencePool is served by the Gateway" if accepted else
                          "no HTTPRoute that sends to this pool is accepted by the Gateway",
                          generation),
                condition("ResolvedRefs", True, RESOLVED_REFS,
                          "poolgate picks the pool's endpoints itself", generation),
            ]
        namespace, name = gw.split("/", 1)
        entry: dict[str, Any] = {
            "parentRef": {"group": GATEWAY_GROUP, "kind": "Gateway", "namespace": namespace,
                          "name": name},
            "conditions": with_transition_times(
                conditions, (previous.get(gw) or {}).get("conditions"), now),
        }
        if v1:
            entry["controllerName"] = state.controller_name
        parents.append(entry)
    return {**old, field: [dict(p) for p in others] + parents}

"""What a snapshot build decided about each object, in the terms its Kubernetes `status` uses:
whether each parentRef of an HTTPRoute attached (and why not), which backendRefs did not
resolve, and what became of each Gateway listener. The problems say the same in words; these
records are for `poolgate serve --source kubernetes`, which writes them back as conditions."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

# Gateway API reasons (gateway.networking.k8s.io/v1, standard channel).
ACCEPTED = "Accepted"
NO_MATCHING_PARENT = "NoMatchingParent"
NOT_ALLOWED_BY_LISTENERS = "NotAllowedByListeners"
NO_MATCHING_LISTENER_HOSTNAME = "NoMatchingListenerHostname"
BACKEND_NOT_FOUND = "BackendNotFound"
INVALID_KIND = "InvalidKind"
REF_NOT_PERMITTED = "RefNotPermitted"
UNSUPPORTED_PROTOCOL = "UnsupportedProtocol"


@dataclass(frozen=True, slots=True)
class ParentOutcome:
    """One parentRef of an HTTPRoute to a Gateway this build serves."""

    index: int  # in spec.parentRefs
    gateway: str  # namespace/name
    accepted: bool
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class RefProblem:
    """A backendRef that did not resolve (ResolvedRefs False)."""

    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class ListenerOutcome:
    """A Gateway listener: served, or refused with a reason."""

    name: str
    accepted: bool
    reason: str
    message: str


@dataclass(slots=True)
class Outcomes:
    """Per object key (namespace/name): the records above, filled while building."""

    route_parents: dict[str, list[ParentOutcome]] = field(default_factory=dict)
    route_refs: dict[str, list[RefProblem]] = field(default_factory=dict)
    listeners: dict[str, list[ListenerOutcome]] = field(default_factory=dict)
    attached: Counter[tuple[str, str]] = field(default_factory=Counter)  # (gateway, listener)

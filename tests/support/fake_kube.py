"""A fake Kubernetes API server for the test suite: the real kube-apiserver's REST semantics for
the resource types a test registers, served over HTTP on 127.0.0.1 by aiohttp.

What it does as the real server does: paths (`/api/v1/...`, `/apis/GROUP/VERSION/...`,
`namespaces/NS/`), one global resourceVersion, uid/creationTimestamp/generation, status
subresources, optimistic concurrency (PUT with a stale resourceVersion: 409), create-on-PUT for
Leases only, resourceVersion required on PUT of custom resources (422), JSON merge patch, JSON
patch, a simplified server-side apply with field ownership, finalizers, label and field
selectors, list pagination, list+watch with resume, bookmarks and 410 Expired after compaction,
selector transitions in watches (an object that stops matching arrives as DELETED), discovery,
and every error as a `Status` object.

Where it is simpler (tests should not rely on these):
- `metadata.generation` exists on every type and bumps whenever anything outside `metadata`
  (and `status`, for types with a status subresource) changes; the real server leaves it unset
  on ConfigMaps, Secrets, Leases and Services.
- Server-side apply: maps merge recursively, lists are atomic (replaced), fields this manager
  applied before and no longer applies are removed unless another manager owns them; conflicts
  (another manager owns a field with a different value) are 409 unless `force=true`.
  `metadata.managedFields` is not written; read ownership with `field_managers()`.
- Strategic merge patch is 415 for every type (the real server accepts it for built-in types).
- No admission, no schema validation or defaulting (a Pod gets no `status.phase: Pending`), no
  namespaces as objects (any namespace exists), no graceful deletion of Pods (gone at once), no
  garbage collection of owned objects.
- A list with `limit` continues from the current state, not from a snapshot; a list from a
  resourceVersion ahead of the server answers 504 at once (the real one first waits 3 s); a
  watch from one waits for writes past it. A list at an older resourceVersion (`Exact`) gets
  the current state.
- Bookmarks arrive every `bookmark_interval` seconds (the real server: about once a minute).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import copy
import enum
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp import web

from poolgate.kube.resources import (
    CONFIG_MAPS,
    LEASES,
    PODS,
    REFERENCE_GRANTS,
    SECRETS,
    SERVICES,
    WATCHED,
    ResourceType,
)
from tests.support.processes import free_port

__all__ = [
    "DEFAULT_TYPES", "DEPLOYMENTS", "INFERENCE_SERVICES", "FakeKubeApi", "Recorded",
    "StatusError", "serve_fake_kube", "write_kubeconfig",
]

Obj = dict[str, Any]
FieldPath = tuple[str, ...]

DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
INFERENCE_SERVICES = ResourceType("poolgate.dev", "v1alpha1", "inferenceservices",
                                  "InferenceService")

# (type, has a status subresource): the core types poolgate touches, Deployments (the operator
# applies them), the operator's own CRD, and every kind the gateway watches.
DEFAULT_TYPES: tuple[tuple[ResourceType, bool], ...] = (
    (PODS, True), (SERVICES, True), (SECRETS, False), (CONFIG_MAPS, False), (LEASES, False),
    (DEPLOYMENTS, True), (INFERENCE_SERVICES, True),
    *((rt, rt != REFERENCE_GRANTS) for rt in WATCHED if rt not in (SECRETS, CONFIG_MAPS)),
)

# Groups served by kube-apiserver itself; any other group is a CRD (no unconditional PUT).
BUILTIN_GROUPS = frozenset({
    "", "apps", "batch", "autoscaling", "policy", "coordination.k8s.io", "discovery.k8s.io",
    "networking.k8s.io", "rbac.authorization.k8s.io", "storage.k8s.io", "events.k8s.io",
    "apiextensions.k8s.io", "admissionregistration.k8s.io", "scheduling.k8s.io", "node.k8s.io",
    "certificates.k8s.io", "flowcontrol.apiserver.k8s.io", "resource.k8s.io",
})

# Kinds a PUT may create (the registry's AllowCreateOnUpdate).
CREATE_ON_UPDATE = frozenset({("coordination.k8s.io", "Lease")})

# Set by the server; a client's values are ignored on writes.
SYSTEM_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation",
                   "deletionTimestamp", "deletionGracePeriodSeconds", "selfLink",
                   "managedFields")
# The metadata fields a client owns (field ownership, server-side apply).
OWNED_METADATA = ("labels", "annotations", "finalizers", "ownerReferences")

REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
           405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
           422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
           503: "ServiceUnavailable", 504: "Timeout"}
TRUE = frozenset({"1", "t", "T", "true", "TRUE", "True"})
NAME_RE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
LABEL_KEY_RE = re.compile(r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
LABEL_VALUE_RE = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?")
SET_TERM_RE = re.compile(r"(!?)\s*(\S+?)\s+(in|notin)\s*\((.*)\)")
OPTIMISTIC_LOCK = ("the object has been modified; please apply your changes to the latest "
                   "version and try again")
LIVENESS_POLL = 0.5  # how often an idle watch checks that its client is still connected


def now_rfc3339() -> str:
    """A Kubernetes `Time` (second precision, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class StatusError(Exception):
    """A refusal, rendered as the `Status` object the real server would send."""

    def __init__(self, code: int, message: str, *, reason: str | None = None,
                 details: Obj | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = reason or REASONS.get(code, "Unknown")
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        """The `Status` object (`kind: Status`, `status: Failure`)."""
        out: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            out["details"] = self.details
        return out

    def response(self) -> web.Response:
        return json_response(self.status(), self.code, self.headers)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None
                  ) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers,
                        content_type="application/json")


@dataclass
class Recorded:
    """One request as the fake received it (`status` is 0 until it was answered; a watch's
    is 200 once its stream began; `user_agent` tells writers apart)."""

    method: str
    path: str
    query: dict[str, str]
    content_type: str | None
    body: Any
    status: int = 0
    user_agent: str | None = None

    @property
    def is_watch(self) -> bool:
        return self.method == "GET" and self.query.get("watch", "") in TRUE


@dataclass
class _Type:
    """A registered resource type, its objects and who owns which of their fields."""

    rt: ResourceType
    status_subresource: bool
    objects: dict[tuple[str, str], Obj] = field(default_factory=dict)
    owners: dict[tuple[str, str], dict[str, set[FieldPath]]] = field(default_factory=dict)

    @property
    def builtin(self) -> bool:
        return self.rt.group in BUILTIN_GROUPS

    @property
    def qualified(self) -> str:
        """`plural.group` as the real server's messages name a resource."""
        return f"{self.rt.plural}.{self.rt.group}" if self.rt.group else self.rt.plural

    def details(self, name: str) -> Obj:
        out: Obj = {"name": name, "kind": self.rt.plural}
        if self.rt.group:
            out["group"] = self.rt.group
        return out

    def not_found(self, name: str) -> StatusError:
        return StatusError(404, f'{self.qualified} "{name}" not found', details=self.details(name))

    def conflict(self, name: str, why: str = OPTIMISTIC_LOCK) -> StatusError:
        return StatusError(409, f'Operation cannot be fulfilled on {self.qualified} "{name}": {why}',
                           details=self.details(name))

    def invalid(self, name: str, why: str) -> StatusError:
        details = {"name": name, "kind": self.rt.kind, "group": self.rt.group}
        return StatusError(422, f'{self.rt.kind}.{self.rt.group or "core"} "{name}" is invalid: {why}',
                           details=details)


@dataclass(frozen=True, slots=True)
class _Event:
    """One write as watches see it: `obj` is the new state (a DELETED object's last state with
    the deletion's resourceVersion), `prev` the state before (None for ADDED)."""

    rv: int
    type: str
    rt: ResourceType
    obj: Obj
    prev: Obj | None


class _Stop(enum.Enum):
    CLEAN = "clean"    # end the stream with its last chunk
    ABRUPT = "abrupt"  # drop the connection mid-stream


@dataclass(frozen=True)
class _Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case "=" | "in":
                return present and value in self.values
            case "!=" | "notin":
                return not present or value not in self.values
            case "exists":
                return present
            case _:
                return not present


@dataclass(frozen=True)
class _Selector:
    """A list's or watch's filter: namespace, label selector and field selector together."""

    namespace: str | None = None
    labels: tuple[_Requirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()  # (field, equal?, value)

    @classmethod
    def parse(cls, query: dict[str, str], namespace: str | None) -> _Selector:
        return cls(namespace, parse_label_selector(query.get("labelSelector", "")),
                   parse_field_selector(query.get("fieldSelector", "")))

    def matches(self, obj: Obj) -> bool:
        meta = obj.get("metadata") or {}
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        labels = meta.get("labels") or {}
        if not all(r.matches(labels) for r in self.labels):
            return False
        for name, equal, value in self.fields:
            actual = meta.get(name.removeprefix("metadata."), "")
            if (actual == value) != equal:
                return False
        return True

    def translate(self, ev: _Event) -> Obj | None:
        """The event this watcher sees: an object entering the selection is ADDED, one leaving
        it DELETED (as the real watch cache reports them), None when it is outside both times."""
        now = self.matches(ev.obj)
        before = ev.prev is not None and self.matches(ev.prev)
        if ev.type == "MODIFIED" and now != before:
            return {"type": "ADDED" if now else "DELETED", "object": ev.obj}
        if now or (ev.type == "DELETED" and before):
            return {"type": ev.type, "object": ev.obj}
        return None


def split_terms(selector: str) -> list[str]:
    """Comma-separated terms, not splitting inside `in (a,b)`."""
    terms: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in selector:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            terms.append("".join(current).strip())
            current = []
        else:
            current.append(ch)
    terms.append("".join(current).strip())
    return [t for t in terms if t]


def parse_label_selector(selector: str) -> tuple[_Requirement, ...]:
    """`a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma-separated (AND)."""
    out = []
    for term in split_terms(selector):
        bad = StatusError(400, f"unable to parse requirement: {term!r}")
        if m := SET_TERM_RE.fullmatch(term):
            if m.group(1):
                raise bad
            key, op = m.group(2), m.group(3)
            values = frozenset(v.strip() for v in m.group(4).split(",") if v.strip())
        elif (m := re.fullmatch(r"(.+?)\s*(!=|==|=)\s*(.*)", term)) is not None:
            key, op, values = m.group(1), "!=" if m.group(2) == "!=" else "=", frozenset(
                {m.group(3)})
        elif term.startswith("!"):
            key, op, values = term[1:].strip(), "!", frozenset()
        else:
            key, op, values = term, "exists", frozenset()
        if not LABEL_KEY_RE.fullmatch(key) or not all(LABEL_VALUE_RE.fullmatch(v) for v in values):
            raise bad
        out.append(_Requirement(key, op, values))
    return tuple(out)


def parse_field_selector(selector: str) -> tuple[tuple[str, bool, str], ...]:
    """`metadata.name` and `metadata.namespace` with `=`, `==` or `!=` (what every type has)."""
    out = []
    for term in split_terms(selector):
        m = re.fullmatch(r"([\w.]+)\s*(!=|==|=)\s*(.*)", term)
        if m is None:
            raise StatusError(400, f"invalid selector: {term!r}; can't understand {term!r}")
        name, op, value = m.groups()
        if name not in ("metadata.name", "metadata.namespace"):
            raise StatusError(400, f'"{name}" is not a known field selector: only '
                                   '"metadata.name", "metadata.namespace"')
        out.append((name, op != "!=", value))
    return tuple(out)


@dataclass(eq=False)
class _Watch:
    """One open watch stream; writes put their (selector-translated) events on its queue."""

    rt: ResourceType
    path: str
    selector: _Selector
    min_rv: int
    queue: asyncio.Queue[Obj | _Stop] = field(default_factory=asyncio.Queue)

    def offer(self, ev: _Event) -> None:
        if ev.rv > self.min_rv and (item := self.selector.translate(ev)) is not None:
            self.queue.put_nowait(item)


@dataclass
class _Failure:
    method: str
    prefix: str
    status: int
    remaining: int


@dataclass(frozen=True)
class _Target:
    """What a resource path names: a collection (`name` None), an object, or its status."""

    type: _Type
    namespace: str | None
    name: str | None
    status: bool


# --- field paths: ownership and server-side apply ---------------------------------------------


def walk(value: Any, path: FieldPath, out: dict[FieldPath, Any]) -> None:
    """The leaves under `path`: non-empty maps are descended into, lists are atomic."""
    if isinstance(value, dict) and value:
        for k, v in value.items():
            walk(v, (*path, str(k)), out)
    else:
        out[path] = value


def tracked_fields(obj: Obj, *, status: bool | None) -> dict[FieldPath, Any]:
    """The fields of `obj` a writer can own: status only (`status=True`), everything but status
    (False), or everything (None); of metadata only labels, annotations, finalizers, owners."""
    out: dict[FieldPath, Any] = {}
    for k, v in obj.items():
        if k in ("apiVersion", "kind"):
            continue
        if k == "metadata":
            if status is not True and isinstance(v, dict):
                for mk in OWNED_METADATA:
                    if mk in v:
                        walk(v[mk], ("metadata", mk), out)
        elif (k == "status") == bool(status) or status is None:
            walk(v, (k,), out)
    return out


def lookup(obj: Any, path: FieldPath) -> Any:
    for part in path:
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def remove_path(obj: Obj, path: FieldPath) -> None:
    parent = lookup(obj, path[:-1])
    if isinstance(parent, dict):
        parent.pop(path[-1], None)


def deep_merge(base: Obj, patch: Obj) -> Obj:
    """Maps merged recursively, anything else replaced; a null removes (as in a merge patch)."""
    for k, v in patch.items():
        if v is None:
            base.pop(k, None)
        elif isinstance(v, dict) and isinstance(base.get(k), dict):
            deep_merge(base[k], v)
        else:
            base[k] = copy.deepcopy(v)
    return base


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 JSON patch (add, remove, replace, move, copy, test)."""
    if not isinstance(ops, list):
        raise StatusError(400, "json patch must be a list of operations")
    for op in ops:
        if not isinstance(op, dict):
            raise StatusError(400, f"invalid json patch operation {op!r}")
        kind, path = op.get("op"), pointer(op.get("path"))
        if kind == "test":
            if resolve(doc, path) != op.get("value"):
                raise StatusError(422, f"testing value {op.get('path')} failed")
        elif kind == "remove":
            container, last = resolve(doc, path[:-1]), path[-1] if path else ""
            take(container, last)
        elif kind in ("add", "replace"):
            if kind == "replace":
                resolve(doc, path)  # must exist
            doc = put(doc, path, copy.deepcopy(op.get("value")), insert=kind == "add")
        elif kind in ("move", "copy"):
            source = pointer(op.get("from"))
            value = copy.deepcopy(resolve(doc, source))
            if kind == "move":
                take(resolve(doc, source[:-1]), source[-1])
            doc = put(doc, path, value, insert=True)
        else:
            raise StatusError(400, f"unknown json patch operation {kind!r}")
    return doc


def pointer(text: Any) -> list[str]:
    if not isinstance(text, str) or (text and not text.startswith("/")):
        raise StatusError(400, f"invalid json pointer {text!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in text.split("/")[1:]]


def resolve(doc: Any, path: list[str]) -> Any:
    for part in path:
        try:
            doc = doc[int(part)] if isinstance(doc, list) else doc[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise StatusError(422, f"json patch: path /{'/'.join(path)} does not exist") from None
    return doc


def take(container: Any, key: str) -> None:
    try:
        if isinstance(container, list):
            del container[int(key)]
        else:
            del container[key]
    except (KeyError, IndexError, ValueError, TypeError):
        raise StatusError(422, f"json patch: cannot remove {key!r}") from None


def put(doc: Any, path: list[str], value: Any, *, insert: bool) -> Any:
    if not path:
        return value
    parent, last = resolve(doc, path[:-1]), path[-1]
    if isinstance(parent, list):
        try:
            index = len(parent) if last == "-" else int(last)
            if insert:
                if not 0 <= index <= len(parent):
                    raise IndexError(index)
                parent.insert(index, value)
            else:
                parent[index] = value
        except (ValueError, IndexError):
            raise StatusError(422, f"json patch: bad index {last!r}") from None
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise StatusError(422, f"json patch: /{'/'.join(path)} has no parent object")
    return doc


def render_path(path: FieldPath) -> str:
    return "." + ".".join(path)


# --- the API server ---------------------------------------------------------------------------


class FakeKubeApi:
    """The state of a fake API server and its HTTP app (`app()`); see the module docstring.

    Tests drive it over HTTP, or in process as `kubectl` would (`apply`, `apply_yaml`, `delete`,
    `set_status`), and inspect it (`get`, `objects`, `requests`, `field_managers`)."""

    def __init__(self, *, token: str | None = None, bookmark_interval: float = 1.0) -> None:
        self.token = token
        self.bookmark_interval = bookmark_interval
        self.requests: list[Recorded] = []
        self._types: dict[tuple[str, str, str], _Type] = {}
        self._rv = 1  # "0" means "any version" to clients, so the counter never shows it
        self._horizon = 0  # watches from below this resourceVersion get 410 Expired
        self._history: list[_Event] = []
        self._watches: list[_Watch] = []
        self._failures: list[_Failure] = []

    # --- registration ---

    def register(self, rt: ResourceType, *, status_subresource: bool = True) -> None:
        """Serve `rt` (as installing its CRD would); registering again only updates the flag."""
        key = (rt.group, rt.version, rt.plural)
        if key in self._types:
            self._types[key].status_subresource = status_subresource
        else:
            self._types[key] = _Type(rt, status_subresource)

    def unregister(self, rt: ResourceType) -> None:
        """Stop serving `rt` (as deleting its CRD would): its objects go, its watches end."""
        if self._types.pop((rt.group, rt.version, rt.plural), None) is not None:
            for watch in self._watches:
                if watch.rt == rt:
                    watch.queue.put_nowait(_Stop.CLEAN)

    def register_defaults(self) -> FakeKubeApi:
        """Register every type in `DEFAULT_TYPES`; returns self."""
        for rt, status_subresource in DEFAULT_TYPES:
            self.register(rt, status_subresource=status_subresource)
        return self

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion (of the last write of any object)."""
        return str(self._rv)

    # --- test hooks ---

    def compact(self) -> None:
        """Forget the watch history: a watch from any resourceVersion before now gets 410."""
        self._history.clear()
        self._horizon = self._rv

    def break_watches(self) -> None:
        """Drop every open watch connection mid-stream, as an API server restart would."""
        for watch in self._watches:
            watch.queue.put_nowait(_Stop.ABRUPT)

    def close_watches(self) -> None:
        """End every open watch stream cleanly (as `timeoutSeconds` running out would)."""
        for watch in self._watches:
            watch.queue.put_nowait(_Stop.CLEAN)

    def fail(self, method: str, path_prefix: str, status: int, times: int = 1) -> None:
        """The next `times` requests with `method` ("*" for any) on a path starting with
        `path_prefix` get `status` and a Status body (before authentication is checked)."""
        self._failures.append(_Failure(method.upper(), path_prefix, status, times))

    def matching(self, method: str | None = None, path_prefix: str = "") -> list[Recorded]:
        """The recorded requests with `method` (any when None) on paths under `path_prefix`."""
        return [r for r in self.requests if (method is None or r.method == method.upper())
                and r.path.startswith(path_prefix)]

    def list_count(self, path: str) -> int:
        """How many list (non-watch GET) requests `path` got."""
        return sum(1 for r in self.requests if r.path == path and r.method == "GET"
                   and not r.is_watch)

    def watch_count(self, path: str) -> int:
        """How many watch requests `path` got."""
        return sum(1 for r in self.requests if r.path == path and r.is_watch)

    def open_watches(self, path_prefix: str = "") -> int:
        """How many watch streams on paths under `path_prefix` are open now."""
        return sum(1 for w in self._watches if w.path.startswith(path_prefix))

    async def wait_for_watch(self, path_prefix: str = "", count: int = 1,
                             timeout: float = 10.0) -> None:
        """Wait until at least `count` watches under `path_prefix` are open."""
        async with asyncio.timeout(timeout):
            while self.open_watches(path_prefix) < count:
                await asyncio.sleep(0.01)

    # --- in-process operations (as kubectl would do them) ---

    def apply(self, obj: Obj, *, field_manager: str = "kubectl") -> Obj:
        """Create or update from a full manifest (`kubectl apply --server-side --force-conflicts`);
        `.status` is ignored for types with a status subresource. Namespace defaults to
        "default". Raises StatusError (404) for an unregistered apiVersion/kind."""
        t = self._type_of(obj.get("apiVersion", ""), obj.get("kind", ""))
        meta = obj.get("metadata") or {}
        namespace = (meta.get("namespace") or "default") if t.rt.namespaced else None
        body = copy.deepcopy(obj)
        if namespace is not None:
            body.setdefault("metadata", {})["namespace"] = namespace
        return self._server_side_apply(t, namespace, str(meta.get("name", "")), body,
                                       field_manager, force=True, status=False)[1]

    def apply_yaml(self, text: str, *, field_manager: str = "kubectl") -> list[Obj]:
        """`apply` every document (and every item of a `kind: List`) of a YAML stream."""
        out = []
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            for item in doc.get("items", []) if doc.get("kind") == "List" else [doc]:
                out.append(self.apply(item, field_manager=field_manager))
        return out

    def delete(self, api_version: str, kind: str, namespace: str | None,
               name: str) -> Obj | None:
        """Delete an object (finalizers hold it with a deletionTimestamp); None when absent."""
        t = self._type_of(api_version, kind)
        if self._key(t, namespace, name) not in t.objects:
            return None
        return self._delete(t, namespace, name, None)

    def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> Obj | None:
        """A copy of the object, or None."""
        t = self._type_of(api_version, kind)
        found = t.objects.get(self._key(t, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def objects(self, api_version: str, kind: str) -> list[Obj]:
        """Copies of every object of a type, ordered by namespace and name."""
        t = self._type_of(api_version, kind)
        return [copy.deepcopy(t.objects[k]) for k in sorted(t.objects)]

    def set_status(self, api_version: str, kind: str, namespace: str | None, name: str,
                   status: Obj, *, field_manager: str = "fake-kube") -> Obj:
        """Replace the object's status (as its controller would); StatusError 404 if absent."""
        t = self._type_of(api_version, kind)
        old = self._existing(t, namespace, name)
        return self._update(t, old, {**old, "status": copy.deepcopy(status)}, status=True,
                            manager=field_manager)

    def field_managers(self, api_version: str, kind: str, namespace: str | None,
                       name: str) -> dict[str, set[str]]:
        """Which manager owns which fields (".spec.replicas") of an object."""
        t = self._type_of(api_version, kind)
        owners = t.owners.get(self._key(t, namespace, name), {})
        return {m: {render_path(p) for p in paths} for m, paths in owners.items()}

    # --- storage ---

    def _type_of(self, api_version: str, kind: str) -> _Type:
        for t in self._types.values():
            if t.rt.api_version == api_version and t.rt.kind == kind:
                return t
        raise StatusError(404, f'no matches for kind "{kind}" in version "{api_version}"')

    @staticmethod
    def _key(t: _Type, namespace: str | None, name: str) -> tuple[str, str]:
        return (namespace or "" if t.rt.namespaced else "", name)

    def _existing(self, t: _Type, namespace: str | None, name: str) -> Obj:
        found = t.objects.get(self._key(t, namespace, name))
        if found is None:
            raise t.not_found(name)
        return found

    def _commit(self, t: _Type, obj: Obj, prev: Obj | None, event: str) -> Obj:
        """Store (or, for DELETED, drop) `obj` at a new resourceVersion and tell the watches.
        Stored objects are never changed in place: events and history share them."""
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        meta = obj["metadata"]
        key = self._key(t, meta.get("namespace"), meta["name"])
        if event == "DELETED":
            t.objects.pop(key, None)
            t.owners.pop(key, None)
        else:
            t.objects[key] = obj
        ev = _Event(self._rv, event, t.rt, obj, prev)
        self._history.append(ev)
        for watch in self._watches:
            if watch.rt == t.rt:
                watch.offer(ev)
        return copy.deepcopy(obj)

    def _check_kind(self, t: _Type, obj: Any, name: str | None = None) -> Obj:
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata", {}), dict):
            raise StatusError(400, f"the object provided is unrecognized (must be of type {t.rt.kind})")
        if obj.get("apiVersion", t.rt.api_version) != t.rt.api_version:
            raise StatusError(400, f"the API version in the data ({obj['apiVersion']}) does not "
                                   f"match the expected API version ({t.rt.api_version})")
        if obj.get("kind", t.rt.kind) != t.rt.kind:
            raise StatusError(400, f"the kind in the data ({obj['kind']}) does not match the "
                                   f"expected kind ({t.rt.kind})")
        obj_name = (obj.get("metadata") or {}).get("name")
        if name is not None and obj_name != name:
            raise StatusError(400, f"the name of the object ({obj_name or ''}) does not match "
                                   f"the name on the URL ({name})")
        return obj

    def _place(self, t: _Type, namespace: str | None, obj: Obj) -> str | None:
        """Check and fill `metadata.namespace` against the request's; the object's namespace."""
        meta = obj.setdefault("metadata", {})
        if not t.rt.namespaced:
            meta.pop("namespace", None)
            return None
        given = meta.get("namespace")
        if namespace is not None and given and given != namespace:
            raise StatusError(400, "the namespace of the provided object does not match the "
                                   "namespace sent on the request")
        namespace = namespace or given
        if not namespace:
            raise StatusError(400, "the server could not find the requested resource: "
                                   "a namespace is required")
        meta["namespace"] = namespace
        return str(namespace)

    def _create(self, t: _Type, namespace: str | None, body: Obj, manager: str, *,
                fields: set[FieldPath] | None = None) -> Obj:
        obj = copy.deepcopy(self._check_kind(t, body))
        obj["apiVersion"], obj["kind"] = t.rt.api_version, t.rt.kind
        namespace = self._place(t, namespace, obj)
        meta = obj["metadata"]
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices("bcdfghjklmnpqrstvwxz2456789", k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        name = str(meta.get("name") or "")
        if not name:
            raise t.invalid("", "metadata.name: Required value: name or generateName is required")
        if len(name) > 253 or not NAME_RE.fullmatch(name):
            raise t.invalid(name, f'metadata.name: Invalid value: "{name}": a lowercase RFC 1123 '
                                  "subdomain must consist of lower case alphanumeric characters, "
                                  "'-' or '.'")
        key = self._key(t, namespace, name)
        if key in t.objects:
            raise StatusError(409, f'{t.qualified} "{name}" already exists',
                              reason="AlreadyExists", details=t.details(name))
        for system in SYSTEM_METADATA:
            meta.pop(system, None)
        meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339(), generation=1)
        if t.status_subresource:
            obj.pop("status", None)
        owned = set(tracked_fields(obj, status=None)) if fields is None else set(fields)
        t.owners[key] = {manager: owned}
        return self._commit(t, obj, None, "ADDED")

    def _admit(self, t: _Type, old: Obj, candidate: Obj, *, status: bool) -> Obj:
        """The object a write of `candidate` over `old` stores: system metadata kept, status
        or everything but status taken (per the subresource written), generation bumped."""
        if status:
            new = copy.deepcopy(old)
            if "status" in candidate:
                new["status"] = copy.deepcopy(candidate["status"])
            else:
                new.pop("status", None)
            return new
        new = copy.deepcopy(candidate)
        new["apiVersion"], new["kind"] = t.rt.api_version, t.rt.kind
        meta = new["metadata"] if isinstance(new.get("metadata"), dict) else {}
        new["metadata"] = meta
        for kept in (*SYSTEM_METADATA, "name", "namespace"):
            if kept in old["metadata"]:
                meta[kept] = old["metadata"][kept]
            else:
                meta.pop(kept, None)
        if t.status_subresource:
            if "status" in old:
                new["status"] = old["status"]
            else:
                new.pop("status", None)
        ignored = {"apiVersion", "kind", "metadata"} | ({"status"} if t.status_subresource else set())
        if ({k: v for k, v in new.items() if k not in ignored}
                != {k: v for k, v in old.items() if k not in ignored}):
            meta["generation"] = int(old["metadata"].get("generation", 0)) + 1
        return new

    def _own(self, t: _Type, old: Obj, new: Obj, manager: str,
             applied: set[FieldPath] | None) -> None:
        """Move field ownership: an update's manager takes the fields it changed; an apply's
        manager owns exactly what it applied; removed fields belong to nobody."""
        meta = new["metadata"]
        owners = t.owners.setdefault(self._key(t, meta.get("namespace"), meta["name"]), {})
        before, after = tracked_fields(old, status=None), tracked_fields(new, status=None)
        changed = {p for p, v in after.items() if p not in before or before[p] != v}
        for m, paths in owners.items():
            if m != manager:
                paths -= changed
            paths &= after.keys()
        if applied is not None:
            owners[manager] = set(applied) & after.keys()
        else:
            owners.setdefault(manager, set()).update(changed)
        for m in [m for m, paths in owners.items() if not paths and m != manager]:
            del owners[m]

    def _update(self, t: _Type, old: Obj, candidate: Obj, *, status: bool, manager: str,
                applied: set[FieldPath] | None = None) -> Obj:
        """Store an update; a no-op writes nothing (no new resourceVersion, no event), and
        removing the last finalizer of an object being deleted deletes it."""
        new = self._admit(t, old, candidate, status=status)
        if new == old:
            return copy.deepcopy(old)
        self._own(t, old, new, manager, applied)
        out = self._commit(t, new, old, "MODIFIED")
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._commit(t, copy.deepcopy(new), new, "DELETED")
        return out

    def _delete(self, t: _Type, namespace: str | None, name: str,
                preconditions: Obj | None) -> Obj:
        old = self._existing(t, namespace, name)
        meta = old["metadata"]
        for field_name in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field_name)
            if wanted and wanted != meta.get(field_name):
                label = "UID" if field_name == "uid" else "ResourceVersion"
                raise t.conflict(name, f"Precondition failed: {label} in precondition: {wanted}, "
                                       f"{label} in object meta: {meta.get(field_name)}")
        if not meta.get("finalizers"):
            return self._commit(t, copy.deepcopy(old), old, "DELETED")
        if meta.get("deletionTimestamp"):
            return copy.deepcopy(old)
        new = copy.deepcopy(old)
        new["metadata"].update(deletionTimestamp=now_rfc3339(), deletionGracePeriodSeconds=0,
                               generation=int(meta.get("generation", 0)) + 1)
        return self._commit(t, new, old, "MODIFIED")

    def _server_side_apply(self, t: _Type, namespace: str | None, name: str, body: Any,
                           manager: str, *, force: bool, status: bool) -> tuple[int, Obj]:
        """Server-side apply (simplified, see the module docstring); (HTTP status, object)."""
        if not name:
            raise t.invalid("", "metadata.name: Required value: name is required")
        self._check_kind(t, body, name)
        if "apiVersion" not in body or "kind" not in body:
            raise StatusError(400, "apiVersion and kind must be set in an applied configuration")
        # The part of the object this apply is about: the status, everything but the status,
        # or (a type without a status subresource) all of it.
        part = status if t.status_subresource or status else None
        fields = tracked_fields(body, status=part)
        old = t.objects.get(self._key(t, namespace, name))
        if old is None:
            if status:
                raise t.not_found(name)
            return 201, self._create(t, namespace, body, manager, fields=set(fields))
        self._check_preconditions(t, old, body)
        owners = t.owners.get(self._key(t, namespace, name), {})
        conflicts = sorted((m, p) for m, paths in owners.items() if m != manager
                           for p in paths & fields.keys() if lookup(old, p) != fields[p])
        if conflicts and not force:
            listed = "\n".join(f'- conflict with "{m}": {render_path(p)}' for m, p in conflicts)
            raise t.conflict(name, f"Apply failed with {len(conflicts)} conflict(s):\n{listed}")
        merged = copy.deepcopy(old)
        applied = {k: v for k, v in body.items() if k not in ("apiVersion", "kind", "metadata")}
        applied["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items()
                               if k in OWNED_METADATA}
        deep_merge(merged, applied)
        others: set[FieldPath] = set()
        for m, paths in owners.items():
            if m != manager:
                others |= paths
        mine = owners.get(manager, set())
        same_part = {p for p in mine if part is None or (p[0] == "status") == part}
        for path in same_part - fields.keys() - others:
            remove_path(merged, path)
        return 200, self._update(t, old, merged, status=status, manager=manager,
                                 applied=(mine - same_part) | fields.keys())

    @staticmethod
    def _check_preconditions(t: _Type, old: Obj, body: Obj) -> None:
        """A write carrying `metadata.resourceVersion` (or `uid`) is refused (409) when the
        stored object's differs."""
        meta, name = body.get("metadata") or {}, old["metadata"]["name"]
        uid = meta.get("uid")
        if uid and uid != old["metadata"]["uid"]:
            raise t.conflict(name, f"Precondition failed: UID in precondition: {uid}, "
                                   f"UID in object meta: {old['metadata']['uid']}")
        rv = meta.get("resourceVersion")
        if rv and str(rv) != old["metadata"]["resourceVersion"]:
            raise t.conflict(name)

    # --- HTTP ---

    def app(self) -> web.Application:
        """The aiohttp app serving this state (a new one per call; state is shared)."""
        app = web.Application()
        app.router.add_route("*", "/{path:.*}", self._handle)
        app.on_shutdown.append(self._on_shutdown)
        return app

    async def _on_shutdown(self, _app: web.Application) -> None:
        self.close_watches()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        content_type = request.headers.get("Content-Type")
        media = (content_type or "").split(";")[0].strip().lower()
        body: Any = None
        parse_error = False
        if raw:
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                try:  # server-side apply also takes YAML
                    body = yaml.safe_load(raw) if media == "application/apply-patch+yaml" else None
                except yaml.YAMLError:
                    body = None
                parse_error = body is None
        record = Recorded(request.method, request.path, dict(request.query), content_type, body,
                          user_agent=request.headers.get("User-Agent"))
        self.requests.append(record)
        try:
            self._injected_failure(request)
            self._authenticate(request)
            if parse_error:
                raise StatusError(400, "the request body is not valid JSON")
            response = await self._route(request, media, body, record)
        except StatusError as exc:
            response = exc.response()
        record.status = record.status or response.status
        return response

    def _injected_failure(self, request: web.Request) -> None:
        for failure in self._failures:
            if (failure.remaining > 0 and failure.method in ("*", request.method)
                    and request.path.startswith(failure.prefix)):
                failure.remaining -= 1
                headers = {"Retry-After": "1"} if failure.status == 429 else None
                raise StatusError(failure.status, f"injected failure for {request.method} "
                                                  f"{request.path}", headers=headers)

    def _authenticate(self, request: web.Request) -> None:
        if self.token is not None and (request.headers.get("Authorization")
                                       != f"Bearer {self.token}"):
            raise StatusError(401, "Unauthorized")

    async def _route(self, request: web.Request, media: str, body: Any,
                     record: Recorded) -> web.StreamResponse:
        discovered = self._discovery(request.path)
        if discovered is not None:
            if request.method != "GET":
                raise method_not_allowed()
            return discovered
        target = self._resolve(request.path)
        query = dict(request.query)
        manager = query.get("fieldManager") or (
            request.headers.get("User-Agent", "unknown").split("/")[0] or "unknown")
        t, ns, name = target.type, target.namespace, target.name
        if name is None:
            if request.method == "GET" and query.get("watch", "") in TRUE:
                return await self._watch(request, t, ns, query, record)
            if request.method == "GET":
                return json_response(self._list(t, ns, query))
            if request.method == "POST" and (ns is not None or not t.rt.namespaced):
                return json_response(self._create(t, ns, body, manager), 201)
            raise method_not_allowed()
        match request.method:
            case "GET":
                return json_response(copy.deepcopy(self._existing(t, ns, name)))
            case "PUT":
                code, obj = self._put(t, ns, name, body, manager, status=target.status)
                return json_response(obj, code)
            case "PATCH":
                code, obj = self._patch(t, ns, name, media, body, query, manager,
                                        status=target.status)
                return json_response(obj, code)
            case "DELETE" if not target.status:
                options = body.get("preconditions") if isinstance(body, dict) else None
                return json_response(self._delete(t, ns, name, options))
        raise method_not_allowed()

    def _resolve(self, path: str) -> _Target:
        """The registered type (and namespace, name, subresource) a path names; 404 if none."""
        parts = path.strip("/").split("/")
        if parts[0] == "api" and len(parts) >= 3:
            group, version, rest = "", parts[1], parts[2:]
        elif parts[0] == "apis" and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise server_not_found()
        namespace = None
        if len(rest) >= 3 and rest[0] == "namespaces":
            namespace, rest = rest[1], rest[2:]
        t = self._types.get((group, version, rest[0]))
        if (t is None or len(rest) > 3 or (namespace is not None and not t.rt.namespaced)
                or (namespace is None and t.rt.namespaced and len(rest) > 1)
                or (len(rest) == 3 and (rest[2] != "status" or not t.status_subresource))):
            raise server_not_found()
        return _Target(t, namespace, rest[1] if len(rest) > 1 else None, len(rest) == 3)

    def _discovery(self, path: str) -> web.Response | None:
        """`/version`, health checks, and API discovery of the registered types."""
        path = path.rstrip("/") or "/"
        if path == "/version":
            return json_response({"major": "1", "minor": "31", "gitVersion": "v1.31.0-fake",
                                  "platform": "linux/amd64"})
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        versions: dict[str, list[str]] = {}
        for g, v, _ in self._types:
            versions.setdefault(g, [])
            if v not in versions[g]:
                versions[g].append(v)
        if path == "/api":
            return json_response({"kind": "APIVersions", "versions": versions.get("", ["v1"])})
        if path == "/apis":
            groups = [{k: v for k, v in api_group(g, vs).items() if k not in ("kind", "apiVersion")}
                      for g, vs in sorted(versions.items()) if g]
            return json_response({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        parts = path.strip("/").split("/")
        if parts[0] == "apis" and len(parts) == 2:
            if parts[1] not in versions:
                raise server_not_found()
            return json_response(api_group(parts[1], versions[parts[1]]))
        if (parts[0] == "api" and len(parts) == 2) or (parts[0] == "apis" and len(parts) == 3):
            group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
            types = [t for t in self._types.values()
                     if (t.rt.group, t.rt.version) == (group, version)]
            if not types:
                raise server_not_found()
            return json_response({"kind": "APIResourceList", "apiVersion": "v1",
                                  "groupVersion": types[0].rt.api_version,
                                  "resources": [r for t in types for r in api_resources(t)]})
        return None

    def _list(self, t: _Type, namespace: str | None, query: dict[str, str]) -> Obj:
        selector = _Selector.parse(query, namespace)
        rv = query.get("resourceVersion", "")
        if rv not in ("", "0"):
            if not rv.isdigit():
                raise StatusError(400, f"invalid resource version: {rv}")
            if int(rv) > self._rv:
                raise StatusError(504, f"Too large resource version: {rv}, current: {self._rv}",
                                  headers={"Retry-After": "1"})
        list_rv, start = self._rv, ("", "")
        if query.get("continue"):
            list_rv, start = self._continue_token(query["continue"])
        keys = sorted(k for k, obj in t.objects.items()
                      if k > start and selector.matches(obj))
        meta: Obj = {"resourceVersion": str(list_rv)}
        limit = query.get("limit", "")
        if limit.isdigit() and 0 < int(limit) < len(keys):
            rest = len(keys) - int(limit)
            keys = keys[:int(limit)]
            token = orjson.dumps({"rv": list_rv, "start": list(keys[-1])})
            meta.update({"continue": base64.urlsafe_b64encode(token).decode(),
                         "remainingItemCount": rest})
        return {"kind": f"{t.rt.kind}List", "apiVersion": t.rt.api_version, "metadata": meta,
                "items": [copy.deepcopy(t.objects[k]) for k in keys]}

    def _continue_token(self, token: str) -> tuple[int, tuple[str, str]]:
        try:
            decoded = orjson.loads(base64.urlsafe_b64decode(token.encode()))
            list_rv, start = int(decoded["rv"]), (str(decoded["start"][0]),
                                                  str(decoded["start"][1]))
        except (ValueError, KeyError, TypeError, IndexError, binascii.Error):
            raise StatusError(400, "continue key is not valid") from None
        if list_rv < self._horizon:
            raise StatusError(410, "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without "
                                   "the continue parameter.", reason="Expired")
        return list_rv, start

    def _put(self, t: _Type, namespace: str | None, name: str, body: Any, manager: str, *,
             status: bool) -> tuple[int, Obj]:
        body = self._check_kind(t, body, name)
        self._place(t, namespace, copy.deepcopy(body))  # checks the namespace only
        old = t.objects.get(self._key(t, namespace, name))
        meta = body.get("metadata") or {}
        if old is None:
            if status or (t.rt.group, t.rt.kind) not in CREATE_ON_UPDATE:
                raise t.not_found(name)
            if meta.get("uid"):
                raise t.conflict(name, f"Precondition failed: UID in precondition: "
                                       f"{meta['uid']}, UID in object meta: ")
            return 201, self._create(t, namespace, body, manager)
        self._check_preconditions(t, old, body)
        if not meta.get("resourceVersion") and not t.builtin:
            raise t.invalid(name, "metadata.resourceVersion: Invalid value: 0x0: must be "
                                  "specified for an update")
        return 200, self._update(t, old, body, status=status, manager=manager)

    def _patch(self, t: _Type, namespace: str | None, name: str, media: str, body: Any,
               query: dict[str, str], manager: str, *, status: bool) -> tuple[int, Obj]:
        if media == "application/apply-patch+yaml":
            if not query.get("fieldManager"):
                raise StatusError(400, "PATCH /apply requires fieldManager to be set")
            if isinstance(body, dict) and t.rt.namespaced and namespace:
                self._place(t, namespace, copy.deepcopy(body))  # checks the namespace only
            return self._server_side_apply(t, namespace, name, body, query["fieldManager"],
                                           force=query.get("force", "") in TRUE, status=status)
        if media not in ("application/merge-patch+json", "application/json-patch+json"):
            raise StatusError(415, "the body of the request was in an unknown format - accepted "
                                   "media types include: application/json-patch+json, "
                                   "application/merge-patch+json, application/apply-patch+yaml")
        old = self._existing(t, namespace, name)
        if media == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise StatusError(400, "a merge patch must be a JSON object")
            patched = merge_patch(old, body)
        else:
            patched = json_patch(copy.deepcopy(old), body)
        if not isinstance(patched, dict):
            raise StatusError(422, "the patched object is not an object")
        self._check_preconditions(t, old, patched)
        return 200, self._update(t, old, patched, status=status, manager=manager)

    async def _watch(self, request: web.Request, t: _Type, namespace: str | None,
                     query: dict[str, str], record: Recorded) -> web.StreamResponse:
        selector = _Selector.parse(query, namespace)
        timeout = query.get("timeoutSeconds", "")
        if timeout and not timeout.isdigit():
            raise StatusError(400, f"invalid timeoutSeconds: {timeout}")
        rv = query.get("resourceVersion", "")
        initial_events = rv in ("", "0") or query.get("sendInitialEvents", "") in TRUE
        if not initial_events and not rv.isdigit():
            raise StatusError(400, f"invalid resource version: {rv}")
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        if not initial_events and int(rv) < self._horizon:
            await response.prepare(request)
            record.status = response.status
            expired = StatusError(410, f"too old resource version: {rv} ({self._horizon})",
                                  reason="Expired")
            await response.write(event_line({"type": "ERROR", "object": expired.status()}))
            return response
        # Start from a consistent point: no await between choosing the first events and
        # registering for the live ones.
        if initial_events:
            start = self._rv
            first: list[Obj] = [{"type": "ADDED", "object": t.objects[k]} for k in sorted(t.objects)
                     if selector.matches(t.objects[k])]
        else:
            start = int(rv)
            first = [item for ev in self._history if ev.rt == t.rt and ev.rv > start
                     if (item := selector.translate(ev)) is not None]
        bookmarks = query.get("allowWatchBookmarks", "") in TRUE
        if initial_events and bookmarks and query.get("sendInitialEvents", "") in TRUE:
            first.append(self._bookmark(t, start, initial_events_end=True))
        watch = _Watch(t.rt, request.path, selector, start)
        self._watches.append(watch)
        try:
            await response.prepare(request)
            record.status = response.status
            for item in first:
                await response.write(event_line(item))
            # timeoutSeconds=0 (or none): the server's own limit, which here is none
            await self._stream(request, response, watch, bookmarks,
                               float(timeout) if timeout and int(timeout) > 0 else None)
        except ConnectionResetError:
            pass  # the client went away
        finally:
            self._watches.remove(watch)
        return response

    async def _stream(self, request: web.Request, response: web.StreamResponse, watch: _Watch,
                      bookmarks: bool, timeout: float | None) -> None:
        """Relay live events until the timeout, a stop, or the client leaving; a bookmark
        whenever the interval passed with nothing to send."""
        t = self._types.get((watch.rt.group, watch.rt.version, watch.rt.plural))
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        next_bookmark = loop.time() + self.bookmark_interval if bookmarks else None
        while True:
            now = loop.time()
            if deadline is not None and now >= deadline:
                return
            wait = min(d - now for d in (deadline, next_bookmark, now + LIVENESS_POLL)
                       if d is not None)
            try:
                async with asyncio.timeout(max(0.0, wait)):
                    item = await watch.queue.get()
            except TimeoutError:
                transport = request.transport
                if transport is None or transport.is_closing():
                    return
                if next_bookmark is not None and t is not None and loop.time() >= next_bookmark:
                    await response.write(event_line(self._bookmark(t, watch.min_rv)))
                    next_bookmark = loop.time() + self.bookmark_interval
                continue
            if item is _Stop.CLEAN:
                return
            if item is _Stop.ABRUPT:
                if request.transport is not None:
                    request.transport.abort()
                return
            await response.write(event_line(item))

    def _bookmark(self, t: _Type, floor: int, *, initial_events_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(max(self._rv, floor))}
        if initial_events_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return {"type": "BOOKMARK",
                "object": {"kind": t.rt.kind, "apiVersion": t.rt.api_version, "metadata": meta}}


def event_line(item: Obj) -> bytes:
    return orjson.dumps(item) + b"\n"


def server_not_found() -> StatusError:
    return StatusError(404, "the server could not find the requested resource", details={})


def method_not_allowed() -> StatusError:
    return StatusError(405, "the server does not allow this method on the requested resource")


def api_group(group: str, versions: list[str]) -> Obj:
    listed = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
    return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": listed,
            "preferredVersion": listed[0]}


def api_resources(t: _Type) -> Iterable[Obj]:
    verbs = ["create", "delete", "get", "list", "patch", "update", "watch"]
    yield {"name": t.rt.plural, "singularName": t.rt.kind.lower(),
           "namespaced": t.rt.namespaced, "kind": t.rt.kind, "verbs": verbs}
    if t.status_subresource:
        yield {"name": f"{t.rt.plural}/status", "singularName": "",
               "namespaced": t.rt.namespaced, "kind": t.rt.kind, "verbs": ["get", "patch", "update"]}


@contextlib.asynccontextmanager
async def serve_fake_kube(api: FakeKubeApi, port: int | None = None) -> AsyncIterator[int]:
    """Serve `api` on 127.0.0.1 (on `port`, e.g. to restart on the same one) until the block
    ends; yields the port. Open watches end cleanly first, so nothing is left pending."""
    runner = web.AppRunner(api.app(), shutdown_timeout=0.5)
    await runner.setup()
    port = port or free_port()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    try:
        yield port
    finally:
        api.close_watches()
        await runner.cleanup()


def write_kubeconfig(path: Path, port: int, token: str | None = None,
                     namespace: str = "default") -> Path:
    """A kubeconfig whose current context is the fake at `http://127.0.0.1:PORT`; `path` is the
    file, or a directory to write `kubeconfig` in. Returns the file's path."""
    target = path / "kubeconfig" if path.is_dir() else path
    user: Obj = {"token": token} if token else {}
    target.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake",
                                                  "namespace": namespace}}],
        "clusters": [{"name": "fake", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "users": [{"name": "fake", "user": user}],
    }))
    return target

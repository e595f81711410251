"""A fake Kubernetes API server for the tests: kmock's scaffold plus the semantics it lacks.

The real ``kubernetes`` client talks to it over HTTP on 127.0.0.1 (an ephemeral port); the server
runs in a background thread with its own event loop, so synchronous code under test and the
test itself can both call it.

kmock 0.8 gives the HTTP server, the parsing of Kubernetes URLs into resource, namespace, name
and action, API discovery, Status-shaped errors, an object store with history and a DSL to
script reactions. Its ``KubernetesEmulator`` keeps objects, but all its object semantics sit in
one ``_handle`` that cannot be corrected piecemeal: it sets no server metadata, ignores
selectors and ``timeoutSeconds``, loses MODIFIED/DELETED events of objects stored without
``metadata.namespace``, answers PUT and delete-collection with 404 and every delete with the
object. So ``_Emulator`` subclasses kmock's ``KubernetesScaffold`` instead, keeps the objects in
kmock's ``ObjectsArray`` (kmock's pattern assertions work on ``server.emulator.objects``) and
registers its own fallback reactions; a test can still put a kmock reaction in front of them.

What the fake does, as a kube-apiserver would (for the resources in ``RESOURCES``, namespaced):

- create fills ``uid``, ``resourceVersion`` (one counter for the whole server), ``generation``,
  ``creationTimestamp`` and ``metadata.namespace`` from the URL; ``generateName``; answers 201;
  409 ``AlreadyExists``; 422 ``Invalid`` for bad names and label values; pods start ``Pending``
  and get the usual spec defaults, services get a cluster IP;
- PATCH (strategic-merge, merge and JSON patch) and PUT bump ``resourceVersion`` (and
  ``generation`` when more than metadata changed), honour a ``resourceVersion`` precondition
  (409 ``Conflict``), leave an unchanged object alone; the main resource ignores ``status``,
  the ``status`` subresource changes only ``status``; a pod's spec is immutable except what
  the real API allows;
- label and field selectors on list, watch and delete-collection;
- watches: synthetic ADDED for what exists when no ``resourceVersion`` is given, otherwise
  every change after it (410 ``Expired`` after ``compact()``); ADDED/MODIFIED/DELETED as an
  object enters, changes in or leaves the selection; ``timeoutSeconds`` ends the stream;
- delete answers the object for pods, services and claims (the client decodes those answers
  as the object; a Status there would break it), a ``Status`` for the rest; 404 ``NotFound``;
  it is immediate (no grace period, finalizers ignored), and the objects the deleted one owns
  (``ownerReferences``) go with it, as the garbage collector's background propagation does;
- delete-collection answers the list of deleted objects, as the real API does;
- a pod's log (GET pods/<name>/log, ``text/plain``): what the node's kubelet (``attach_kubelet``)
  holds for the container, its last ``tailLines`` lines, then its first ``limitBytes`` bytes, as
  kubelet cuts them; the container named or the pod's only one (400 otherwise, or for a name the
  pod lacks); empty for a pod on no node yet, 400 "waiting to start" for a container that never
  started; 404 for an unknown pod.

Not done: API discovery beyond kmock's, server-side apply, ``dryRun``, paging, bookmarks,
the logs' ``follow``, ``previous``, ``sinceSeconds`` and ``timestamps``, cluster-scoped
resources, quantities and most defaulting and validation (see ``kubernetes-validate`` for
schemas).
"""

from __future__ import annotations

import asyncio
import copy
import json
import random
import re
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol, TypeVar

import aiohttp.web
import attrs
import kmock
from kubernetes import client

DEFAULT_NAMESPACE = "jupyter-sessions"

Obj = dict[str, Any]
T = TypeVar("T")


class LogSource(Protocol):
    """What keeps a node's container logs (the test's :class:`~tests.kube.kubelet.Kubelet`)."""

    node: str

    def container_log(self, pod_uid: str, container: str) -> str:
        """All the container has printed so far ("" if nothing)."""
        ...


@dataclass(frozen=True)
class ResourceKind:
    """One resource the fake serves, with the few ways in which resources differ."""

    group: str
    version: str
    plural: str
    kind: str
    # A status subresource: the main resource then ignores changes to ``status``.
    has_status: bool = False
    # DELETE answers with the deleted object (the registry's ``ReturnDeletedObject``).
    returns_deleted: bool = False
    # Field selectors beyond metadata.name and metadata.namespace, as the real API allows.
    fields: frozenset[str] = frozenset()

    @property
    def resource(self) -> kmock.resource:
        return kmock.resource(self.group, self.version, self.plural)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


_POD_FIELDS = (
    "spec.nodeName spec.restartPolicy spec.schedulerName spec.serviceAccountName status.phase "
    "status.podIP status.nominatedNodeName"
)
_EVENT_FIELDS = (
    "involvedObject.kind involvedObject.namespace involvedObject.name involvedObject.uid "
    "involvedObject.apiVersion involvedObject.resourceVersion involvedObject.fieldPath reason "
    "reportingComponent source type"
)
RESOURCES: dict[str, ResourceKind] = {
    kind.plural: kind
    for kind in (
        ResourceKind("", "v1", "pods", "Pod", True, True, frozenset(_POD_FIELDS.split())),
        ResourceKind("", "v1", "services", "Service", True, True),
        ResourceKind("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, True),
        ResourceKind("", "v1", "events", "Event", fields=frozenset(_EVENT_FIELDS.split())),
        ResourceKind("", "v1", "secrets", "Secret", fields=frozenset({"type"})),
        ResourceKind("", "v1", "configmaps", "ConfigMap"),
        ResourceKind("networking.k8s.io", "v1", "networkpolicies", "NetworkPolicy"),
        ResourceKind("networking.k8s.io", "v1", "ingresses", "Ingress", has_status=True),
    )
}

# The canonical ``reason`` of a Status for each code (k8s.io/apimachinery/pkg/api/errors).
_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(
    code: int, message: str, *, reason: str | None = None, details: Mapping[str, Any] | None = None
) -> Obj:
    """A v1 Status as the API server writes it for a failure (or a success, for ``code`` 200)."""
    body: Obj = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success" if code < 400 else "Failure",
        "message": message,
        "reason": reason if reason is not None else _REASONS.get(code, "InternalError"),
        "code": code,
    }
    if details:
        body["details"] = dict(details)
    return body


def _error(
    code: int, message: str, *, reason: str | None = None, details: Mapping[str, Any] | None = None
) -> kmock.KubernetesError:
    return kmock.KubernetesError(
        status=code,
        reason=reason if reason is not None else _REASONS.get(code, "InternalError"),
        message=message,
        details=dict(details) if details else None,
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- selectors ---------------------------------------------------------------------------------

_LABEL_KEY = r"(?:[A-Za-z0-9][-A-Za-z0-9_.]*/)?[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?"
_LABEL_VALUE = r"(?:[A-Za-z0-9](?:[-A-Za-z0-9_.]*[A-Za-z0-9])?)?"
_SET_REQUIREMENT = re.compile(rf"\s*({_LABEL_KEY})\s+(in|notin)\s*\(([^()]*)\)\s*")
_EQUALITY_REQUIREMENT = re.compile(rf"\s*({_LABEL_KEY})\s*(==|=|!=)\s*({_LABEL_VALUE})\s*")
_EXISTS_REQUIREMENT = re.compile(rf"\s*(!?)\s*({_LABEL_KEY})\s*")
_FIELD_REQUIREMENT = re.compile(r"\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*([^,]*?)\s*")


@dataclass(frozen=True)
class _Requirement:
    key: str
    # "in" and "notin" (equality is "in" of one value), "exists" and "!".
    operator: str
    values: frozenset[str] = frozenset()

    def matches(self, values: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in values
        if self.operator == "!":
            return self.key not in values
        if self.operator == "in":
            return self.key in values and values[self.key] in self.values
        return values.get(self.key) not in self.values  # notin: also true when absent


def _split_outside_parentheses(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return parts


def parse_label_selector(selector: str) -> tuple[_Requirement, ...]:
    """``a=b,a==b,a!=b,a in (x,y),a notin (x),a,!a``; raises ValueError as the API answers 400."""
    requirements = []
    for part in _split_outside_parentheses(selector) if selector.strip() else []:
        if match := _SET_REQUIREMENT.fullmatch(part):
            values = frozenset(v.strip() for v in match[3].split(",") if v.strip())
            requirements.append(_Requirement(match[1], match[2], values))
        elif match := _EQUALITY_REQUIREMENT.fullmatch(part):
            operator = "notin" if match[2] == "!=" else "in"
            requirements.append(_Requirement(match[1], operator, frozenset({match[3]})))
        elif match := _EXISTS_REQUIREMENT.fullmatch(part):
            requirements.append(_Requirement(match[2], "!" if match[1] else "exists"))
        else:
            raise ValueError(f"unable to parse requirement: {part.strip()!r}")
    return tuple(requirements)


def _field_value(obj: Obj, path: str) -> str:
    if path == "source":  # the events' "source" field selector means source.component
        path = "source.component"
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return "" if value is None else str(value)


@dataclass(frozen=True)
class Selector:
    """The label and field selectors of a list, watch or delete-collection request."""

    labels: tuple[_Requirement, ...] = ()
    fields: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    @classmethod
    def from_params(cls, kind: ResourceKind, params: Mapping[str, str]) -> Selector:
        try:
            labels = parse_label_selector(params.get("labelSelector", ""))
        except ValueError as exc:
            raise _error(400, f"unable to parse requirement: {exc}") from exc
        fields = []
        field_selector = params.get("fieldSelector", "")
        for part in field_selector.split(",") if field_selector.strip() else []:
            match = _FIELD_REQUIREMENT.fullmatch(part)
            if match is None:
                raise _error(
                    400, f"invalid selector: '{field_selector}'; can't understand '{part}'"
                )
            path, operator, value = match.groups()
            if path not in {"metadata.name", "metadata.namespace"} | kind.fields:
                raise _error(400, f"field label not supported: {path}")
            fields.append((path, operator != "!=", value))
        return cls(labels, tuple(fields))

    def matches(self, obj: Obj) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(requirement.matches(labels) for requirement in self.labels) and all(
            (_field_value(obj, path) == value) == equal for path, equal, value in self.fields
        )


# --- patches -----------------------------------------------------------------------------------

# Lists that a strategic-merge patch merges item by item (by this key) instead of replacing;
# by field name only, which is right for pods and their status, the objects patched here.
_MERGE_KEYS = {
    "conditions": "type",
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "volumes": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
}


def merge_patch(target: Any, patch: Any, *, strategic: bool = False) -> Any:
    """RFC 7386 merge patch; ``strategic`` also merges the lists in ``_MERGE_KEYS`` by key.

    The strategic form ignores ``$``-directives, except ``$patch: delete`` on a list item.
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if strategic and key.startswith("$"):
            continue
        if value is None:
            result.pop(key, None)
        elif strategic and key in _MERGE_KEYS and isinstance(value, list):
            result[key] = _merge_list(result.get(key), value, _MERGE_KEYS[key])
        else:
            result[key] = merge_patch(result.get(key), value, strategic=strategic)
    return result


def _merge_list(target: Any, patch: list[Any], merge_key: str) -> list[Any]:
    result = copy.deepcopy(target) if isinstance(target, list) else []
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            result.append(copy.deepcopy(item))
            continue
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(merge_key) == item[merge_key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(merge_patch({}, item, strategic=True))
        else:
            result[index] = merge_patch(result[index], item, strategic=True)
    return result


def json_patch(target: Obj, operations: list[Any]) -> Obj:
    """RFC 6902 ``add``, ``remove``, ``replace`` and ``test``; raises ValueError when it fails."""
    document = copy.deepcopy(target)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        tokens = [t.replace("~1", "/").replace("~0", "~") for t in path.split("/")[1:]]
        if not tokens:
            raise ValueError(f"cannot {op} the whole document")
        try:
            parent: Any = document
            for token in tokens[:-1]:
                parent = parent[int(token)] if isinstance(parent, list) else parent[token]
            last = tokens[-1]
            if op == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != operation.get("value"):
                    raise ValueError(f"testing value {path} failed")
            elif op == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            elif op in ("add", "replace"):
                value = copy.deepcopy(operation.get("value"))
                if isinstance(parent, list):
                    if last == "-":
                        parent.append(value)
                    elif op == "add":
                        parent.insert(int(last), value)
                    else:
                        parent[int(last)] = value
                elif op == "replace" and last not in parent:
                    raise ValueError(
                        f"replace operation does not apply: doc is missing key: {path}"
                    )
                else:
                    parent[last] = value
            else:
                raise ValueError(f"unsupported JSON patch operation: {op}")
        except (KeyError, IndexError) as exc:
            raise ValueError(f"{op} operation does not apply: doc is missing path: {path}") from exc
    return document


# --- validation and defaults -----------------------------------------------------------------

_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_LABEL_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE_RE = re.compile(_LABEL_VALUE)
# The pod spec fields an update may change (ValidatePodUpdate); the rest is immutable.
_POD_MUTABLE_SPEC = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
_POD_UPDATE_FORBIDDEN = (
    "pod updates may not change fields other than `spec.containers[*].image`,"
    "`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` "
    "(only additions to existing tolerations),`spec.terminationGracePeriodSeconds` "
    "(allow it to be set to 1 if it was previously negative)"
)
_GENERATE_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # as apiserver's SimpleNameGenerator


def _invalid(kind: ResourceKind, name: str, causes: list[tuple[str, str]]) -> kmock.KubernetesError:
    """422 Invalid, ``causes`` being (field, message) pairs, worded as the API words them."""
    text = ", ".join(f"{path}: {message}" for path, message in causes)
    return _error(
        422,
        f'{kind.kind} "{name}" is invalid: {text}',
        details={
            "name": name,
            "kind": kind.kind,
            "causes": [
                {"reason": "FieldValueInvalid", "message": message, "field": path}
                for path, message in causes
            ],
        },
    )


def _validate(kind: ResourceKind, obj: Obj) -> None:
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    causes: list[tuple[str, str]] = []
    if kind.plural == "services":
        if len(name) > 63 or not _DNS1035_LABEL.fullmatch(name):
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a DNS-1035 label must consist of lower case '
                    "alphanumeric characters or '-', start with an alphabetic character, and end "
                    "with an alphanumeric character",
                )
            )
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of lower '
                "case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    for key, value in (meta.get("labels") or {}).items():
        prefix, _, label_name = str(key).rpartition("/")
        if (
            len(label_name) > 63
            or not _LABEL_NAME.fullmatch(label_name)
            or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)))
        ):
            causes.append(("metadata.labels", f'Invalid value: "{key}": name part must be valid'))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE_RE.fullmatch(value):
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty '
                    "string or consist of alphanumeric characters, '-', '_' or '.', and must start "
                    "and end with an alphanumeric character, at most 63 characters",
                )
            )
    if kind.plural == "pods":
        containers = (obj.get("spec") or {}).get("containers") or []
        if not containers:
            causes.append(("spec.containers", "Required value"))
        for index, container in enumerate(containers):
            for required in ("name", "image"):
                if not container.get(required):
                    causes.append((f"spec.containers[{index}].{required}", "Required value"))
    if causes:
        raise _invalid(kind, name, causes)


def _pod_spec_without_mutable(spec: Obj) -> Obj:
    spec = copy.deepcopy(spec)
    for key in _POD_MUTABLE_SPEC:
        spec.pop(key, None)
    for key in ("containers", "initContainers"):
        for container in spec.get(key) or []:
            container.pop("image", None)
    return spec


# What a new object's status is (the client's status is dropped at creation).
_INITIAL_STATUS: dict[str, Obj] = {
    "pods": {"phase": "Pending"},
    "services": {"loadBalancer": {}},
    "persistentvolumeclaims": {"phase": "Pending"},
}


def _image_pull_policy(image: str) -> str:
    tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
    return "IfNotPresent" if tagged and not image.endswith(":latest") else "Always"


# --- the emulator (runs in the server's event loop) --------------------------------------------


class _Change(NamedTuple):
    version: int
    kind: ResourceKind
    namespace: str
    type: str  # ADDED, MODIFIED or DELETED
    obj: Obj
    previous: Obj | None  # what a MODIFIED object was, to tell who enters or leaves a selection


@dataclass
class _Fault:
    method: str | None
    path: re.Pattern[str]
    params: Mapping[str, str]
    times: int
    status: int | None = None
    body: Any = None
    delay: float = 0.0
    before: bool = True

    def matches(self, method: str, path: str, params: Mapping[str, str]) -> bool:
        return (
            self.times > 0
            and (self.method is None or self.method == method)
            and self.path.search(path) is not None
            and all(params.get(key) == value for key, value in self.params.items())
        )


class RecordedRequest(NamedTuple):
    method: str
    path: str
    query: dict[str, str]


@dataclass
class _Shared:
    """What the test thread and the server thread both touch, under one lock."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    faults: list[_Fault] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    internal_errors: list[BaseException] = field(default_factory=list)

    def see(self, method: str, path: str, params: Mapping[str, str]) -> list[_Fault]:
        """Log a request; return the first matching delay and failure, each used up once."""
        taken: list[_Fault] = []
        with self.lock:
            self.requests.append(RecordedRequest(method, path, dict(params)))
            for is_failure in (False, True):
                for fault in self.faults:
                    if (fault.status is not None) == is_failure and fault.matches(
                        method, path, params
                    ):
                        fault.times -= 1
                        taken.append(fault)
                        break
            self.faults = [fault for fault in self.faults if fault.times > 0]
        return taken


@attrs.define(kw_only=True)
class _Emulator(kmock.KubernetesScaffold):
    shared: _Shared = attrs.field(factory=_Shared)
    objects: kmock.ObjectsArray = attrs.field(factory=kmock.ObjectsArray, init=False)
    version: int = attrs.field(default=0, init=False)
    changes: list[_Change] = attrs.field(factory=list, init=False)
    compacted: int = attrs.field(default=0, init=False)  # changes up to it are forgotten
    watchers: set[asyncio.Queue[_Change | None]] = attrs.field(factory=set, init=False)
    ip_counter: int = attrs.field(default=0, init=False)
    # The kubelets that keep the containers' logs, by node name.
    log_sources: dict[str, LogSource] = attrs.field(factory=dict, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for kind in RESOURCES.values():
            self.resources[f"{kind.api_version}/{kind.plural}"] = kmock.ResourceInfo(
                kind=kind.kind,
                singular=kind.kind.lower(),
                namespaced=True,
                verbs=set("create delete deletecollection get list patch update watch".split()),
                subresources=({"status"} if kind.has_status else set())
                | ({"binding", "log"} if kind.plural == "pods" else set()),
            )
        # The scaffold's discovery, also at the paths with a trailing slash that the client asks.
        self.fallback["get", re.compile(r"/version/")] << self._serve_server_version
        self.fallback["get", re.compile(r"/api/")] << self._serve_api
        self.fallback["get", re.compile(r"/apis/")] << self._serve_apis
        self.fallback["get", re.compile(r"/api/[^/]+/")] << self._serve_version
        self.fallback["get", re.compile(r"/apis/[^/]+/")] << self._serve_group
        self.fallback["get", re.compile(r"/apis/[^/]+/[^/]+/")] << self._serve_version
        # Same priority as the discovery fallbacks, which match other paths; tried in this
        # order, so a named DELETE is taken before the collection's.
        self.fallback[kmock.action.LIST] << self._serve_list
        # Before FETCH, which would take a pod's log for an unknown subresource.
        self.fallback["get", re.compile(r"/api/v1/namespaces/[^/]+/pods/[^/]+/log")] << (
            self._serve_log
        )
        self.fallback[kmock.action.WATCH] << self._serve_watch
        self.fallback[kmock.action.FETCH] << self._serve_fetch
        self.fallback[kmock.action.CREATE] << 201 << self._serve_create
        self.fallback[kmock.action.UPDATE] << self._serve_patch
        self.fallback[kmock.method.PUT] << self._serve_replace
        self.fallback[kmock.method.POST] << 201 << self._serve_binding
        self.fallback[kmock.action.DELETE] << self._serve_delete
        self.fallback[kmock.method.DELETE] << self._serve_delete_collection

    # The entry point of every request: the log and the injected faults come first.
    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        method, path = str(request.method.value).upper(), request.url.path
        faults = self.shared.see(method, path, request.params)
        watch = request.action == kmock.action.WATCH
        for fault in faults:
            if fault.delay and (fault.before or watch):
                await asyncio.sleep(fault.delay)
        for fault in faults:
            if fault.status is not None:
                body = fault.body
                if body is None:
                    body = status_body(fault.status, f"injected fault on {method} {path}")
                return aiohttp.web.json_response(body, status=fault.status)
        try:
            response = await super()._handle(request)
        except kmock.KubernetesError as exc:
            response = await self._render_error(exc)
        for fault in faults:
            if fault.delay and not (fault.before or watch):
                await asyncio.sleep(fault.delay)  # the change is made, the answer is late
        return response

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            # kmock's own errors (unknown endpoints) have readable reasons, not the canonical.
            reason = exc.reason if exc.reason and " " not in exc.reason else None
            body = status_body(exc.status, exc.message or "", reason=reason, details=exc.details)
            return aiohttp.web.json_response(body, status=exc.status)
        with self.shared.lock:
            self.shared.internal_errors.append(exc)
        return await super()._render_error(exc)

    # --- lookups ---

    def _kind(
        self, request: kmock.Request, *, named: bool, subresources: Iterable[str] = ()
    ) -> ResourceKind:
        resource = request.resource
        kind = RESOURCES.get(resource.plural or "") if resource is not None else None
        if (
            kind is None
            or resource is None
            or (resource.group, resource.version) != (kind.group, kind.version)
            or (request.subresource is not None and request.subresource not in subresources)
            or (named and (request.namespace is None or request.name is None))
        ):
            raise _error(404, "the server could not find the requested resource")
        return kind

    def _current(self, kind: ResourceKind, namespace: str | None, name: str | None) -> Obj | None:
        key = (kind.resource, namespace, name or "")
        if key not in self.objects or self.objects[key].deleted:
            return None
        return self.objects[key].raw

    def _existing(self, kind: ResourceKind, namespace: str | None, name: str | None) -> Obj:
        obj = self._current(kind, namespace, name)
        if obj is None:
            raise _error(
                404,
                f'{kind.plural} "{name}" not found',
                details={"name": name, "kind": kind.plural},
            )
        return obj

    def _all(self, kind: ResourceKind, namespace: str | None) -> list[Obj]:
        found = []
        for (resource, obj_namespace, _name), obj in self.objects.items():
            if resource.plural == kind.plural and not obj.deleted:
                if namespace is None or obj_namespace == namespace:
                    found.append(obj.raw)
        return sorted(found, key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))

    # --- changes ---

    def _store(self, kind: ResourceKind, obj: Obj, change: str, previous: Obj | None = None) -> Obj:
        """Record a new version of ``obj`` (copied), tell the watchers; return the stored copy."""
        self.version += 1
        obj = copy.deepcopy(obj)
        obj["kind"], obj["apiVersion"] = kind.kind, kind.api_version
        obj["metadata"]["resourceVersion"] = str(self.version)
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        key = (kind.resource, namespace, name)
        if change == "DELETED":
            self.objects[key].delete()
        elif key in self.objects:
            self.objects[key].history.append(obj)
        else:
            self.objects[key] = obj
        record = _Change(self.version, kind, namespace, change, obj, previous)
        self.changes.append(record)
        for queue in self.watchers:
            queue.put_nowait(record)
        return obj

    def _delete(self, kind: ResourceKind, obj: Obj, orphan: bool = False) -> Obj:
        gone = copy.deepcopy(obj)
        if kind.returns_deleted:
            gone["metadata"].setdefault("deletionTimestamp", _now())
            gone["metadata"].setdefault("deletionGracePeriodSeconds", 0)
        gone = self._store(kind, gone, "DELETED")
        if not orphan:
            self._collect_garbage(gone["metadata"]["namespace"], gone["metadata"]["uid"])
        return gone

    def _collect_garbage(self, namespace: str, owner_uid: str) -> None:
        for kind in RESOURCES.values():
            for obj in self._all(kind, namespace):
                owners = obj["metadata"].get("ownerReferences") or []
                if any(owner.get("uid") == owner_uid for owner in owners):
                    # Already gone if it had two owners and went with the other one.
                    if self._current(kind, namespace, obj["metadata"]["name"]) is not None:
                        self._delete(kind, obj)

    # --- the verbs ---

    async def _serve_list(self, request: kmock.Request) -> kmock.Payload:
        kind = self._kind(request, named=False)
        selector = Selector.from_params(kind, request.params)
        items = []
        for obj in self._all(kind, request.namespace):
            if selector.matches(obj):
                item = copy.deepcopy(obj)
                del item["kind"], item["apiVersion"]  # list items carry neither, as in the API
                items.append(item)
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.version)},
            "items": items,
        }

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[kmock.Payload]:
        kind = self._kind(request, named=False)
        selector = Selector.from_params(kind, request.params)
        timeout = request.params.get("timeoutSeconds")
        since = request.params.get("resourceVersion", "")
        if not since.isdigit() and since != "":
            raise _error(400, f"invalid resource version: {since}")
        # The backlog and the subscription are taken with no await between: no change is lost.
        backlog: list[Obj] = []
        if since in ("", "0"):
            for obj in self._all(kind, request.namespace):
                if selector.matches(obj) and request.name in (None, obj["metadata"]["name"]):
                    backlog.append({"type": "ADDED", "object": obj})
        elif int(since) < self.compacted:
            message = f"too old resource version: {since} ({self.compacted})"
            backlog.append({"type": "ERROR", "object": status_body(410, message)})
        else:
            for past in self.changes:
                if past.version > int(since) and (
                    event := self._event(request, selector, kind, past)
                ):
                    backlog.append(event)
        queue: asyncio.Queue[_Change | None] = asyncio.Queue()
        self.watchers.add(queue)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(timeout) if timeout else None
        try:
            yield b""  # the headers go now: the client's call returns, the stream follows
            for event in backlog:
                yield event
            if backlog and backlog[-1]["type"] == "ERROR":
                return
            while True:
                remaining = None if deadline is None else deadline - loop.time()
                if remaining is not None and remaining <= 0:
                    return
                try:
                    change = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    return
                if change is None:  # the server stops
                    return
                if event := self._event(request, selector, kind, change):
                    yield event
        finally:
            self.watchers.discard(queue)

    def _event(
        self, request: kmock.Request, selector: Selector, kind: ResourceKind, change: _Change
    ) -> Obj | None:
        if change.kind != kind or request.namespace not in (None, change.namespace):
            return None
        if request.name not in (None, change.obj["metadata"]["name"]):
            return None
        now = selector.matches(change.obj)
        before = change.previous is not None and selector.matches(change.previous)
        if change.type == "MODIFIED" and now != before:
            # The object entered or left the selection, which a selecting watcher sees as such.
            return {"type": "ADDED" if now else "DELETED", "object": change.obj}
        return {"type": change.type, "object": change.obj} if now else None

    async def _serve_fetch(self, request: kmock.Request) -> kmock.Payload:
        kind = self._kind(request, named=True, subresources=["status"])
        if request.subresource and not kind.has_status:
            raise _error(404, "the server could not find the requested resource")
        return self._existing(kind, request.namespace, request.name)

    async def _serve_log(self, request: kmock.Request) -> kmock.Payload:
        """A container's log, as the API server relays it from the pod's node (see the module's
        docstring for what is checked and in which order)."""
        kind = self._kind(request, named=True, subresources=["log"])
        pod = self._existing(kind, request.namespace, request.name)
        tail = _int_param(request.params, "tailLines", minimum=0)
        limit = _int_param(request.params, "limitBytes", minimum=1)
        spec, status = pod.get("spec") or {}, pod.get("status") or {}
        containers = [c["name"] for c in spec.get("containers") or []]
        init = [c["name"] for c in spec.get("initContainers") or []]
        container = request.params.get("container") or ""
        if not container:
            if len(containers) != 1:
                also = f" or one of the init containers: [{' '.join(init)}]" if init else ""
                raise _error(
                    400,
                    f"a container name must be specified for pod {request.name}, choose one "
                    f"of: [{' '.join(containers)}]{also}",
                )
            container = containers[0]
        elif container not in containers + init:
            raise _error(400, f"container {container} is not valid for pod {request.name}")
        node = spec.get("nodeName")
        if not node:
            return _plain_text(b"")  # no node yet: the API server has nowhere to ask
        statuses = [
            *(status.get("initContainerStatuses") or []),
            *(status.get("containerStatuses") or []),
        ]
        found: Obj = next((s for s in statuses if s.get("name") == container), {})
        state, last = found.get("state") or {}, found.get("lastState") or {}
        if not (state.get("running") or state.get("terminated") or last.get("terminated")):
            reason = (state.get("waiting") or {}).get("reason") or "ContainerCreating"
            raise _error(
                400,
                f'container "{container}" in pod "{request.name}" is waiting to start: {reason}',
            )
        source = self.log_sources.get(node)
        text = source.container_log(pod["metadata"]["uid"], container) if source else ""
        lines = text.splitlines(keepends=True)
        if tail is not None:
            lines = lines[len(lines) - tail :] if tail else []
        data = "".join(lines).encode()
        return _plain_text(data[:limit] if limit is not None else data)

    async def _serve_create(self, request: kmock.Request) -> kmock.Payload:
        kind = self._kind(request, named=False)
        if request.namespace is None:
            raise _error(404, "the server could not find the requested resource")
        body = self._body(request)
        if not isinstance(body, dict):
            raise _error(400, "the body of the request was in an unknown format")
        meta = body.setdefault("metadata", {})
        if meta.get("namespace") not in (None, "", request.namespace):
            raise _error(
                400,
                "the namespace of the provided object does not match the namespace sent on the "
                "request",
            )
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(random.choices(_GENERATE_NAME_ALPHABET, k=5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        if not meta.get("name"):
            raise _invalid(
                kind, "", [("metadata.name", "Required value: name or generateName is required")]
            )
        _validate(kind, body)
        if self._current(kind, request.namespace, meta["name"]) is not None:
            raise _error(
                409,
                f'{kind.plural} "{meta["name"]}" already exists',
                reason="AlreadyExists",
                details={"name": meta["name"], "kind": kind.plural},
            )
        for server_set in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
            meta.pop(server_set, None)
        meta.update(
            namespace=request.namespace,
            uid=str(uuid.uuid4()),
            creationTimestamp=_now(),
            generation=1,
        )
        self._default_spec(kind, body)
        if kind.has_status:
            body["status"] = copy.deepcopy(_INITIAL_STATUS.get(kind.plural))
            if body["status"] is None:
                del body["status"]
        return self._store(kind, body, "ADDED")

    def _default_spec(self, kind: ResourceKind, obj: Obj, current: Obj | None = None) -> None:
        """The few defaults a spawner might read; on an update, the service keeps its IP."""
        if kind.plural == "pods":
            spec = obj.setdefault("spec", {})
            spec.setdefault("restartPolicy", "Always")
            spec.setdefault("schedulerName", "default-scheduler")
            spec.setdefault("terminationGracePeriodSeconds", 30)
            spec.setdefault("dnsPolicy", "ClusterFirst")
            for container in spec.get("containers") or []:
                container.setdefault(
                    "imagePullPolicy", _image_pull_policy(str(container.get("image")))
                )
        elif kind.plural == "services":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            spec.setdefault("sessionAffinity", "None")
            if current is not None:
                for allocated in ("clusterIP", "clusterIPs"):
                    if allocated in current.get("spec", {}):
                        spec.setdefault(allocated, current["spec"][allocated])
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                self.ip_counter += 1
                spec["clusterIP"] = f"10.96.{self.ip_counter // 250}.{self.ip_counter % 250 + 1}"
            if spec.get("clusterIP"):
                spec.setdefault("clusterIPs", [spec["clusterIP"]])
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))

    async def _serve_binding(self, request: kmock.Request) -> kmock.Payload:
        """The scheduler's POST to pods/<name>/binding: the pod gets its node."""
        kind = self._kind(request, named=True, subresources=["binding"])
        if kind.plural != "pods" or request.subresource != "binding":
            raise _error(404, "the server could not find the requested resource")
        current = self._existing(kind, request.namespace, request.name)
        node = ((self._body(request) or {}).get("target") or {}).get("name")
        if not node:
            raise _invalid(kind, str(request.name), [("target.name", "Required value")])
        assigned = (current.get("spec") or {}).get("nodeName")
        if assigned:
            raise _error(
                409,
                f'Operation cannot be fulfilled on pods/binding "{request.name}": pod '
                f'{request.name} is already assigned to node "{assigned}"',
                details={"name": request.name, "kind": "pods/binding"},
            )
        bound = copy.deepcopy(current)
        bound["spec"]["nodeName"] = node
        conditions = [
            c for c in (bound["status"].get("conditions") or []) if c.get("type") != "PodScheduled"
        ]
        scheduled = {"type": "PodScheduled", "status": "True", "lastTransitionTime": _now()}
        bound["status"]["conditions"] = [*conditions, scheduled]
        self._store(kind, bound, "MODIFIED", previous=current)
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "code": 201,
        }

    async def _serve_patch(self, request: kmock.Request) -> kmock.Payload:
        kind = self._kind(request, named=True, subresources=["status"])
        current = self._existing(kind, request.namespace, request.name)
        body = self._body(request)
        content_type = (
            next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
            .split(";")[0]
            .strip()
        )
        try:
            if content_type == "application/json-patch+json" and isinstance(body, list):
                candidate = json_patch(current, body)
            elif content_type == "application/merge-patch+json" and isinstance(body, dict):
                candidate = merge_patch(current, body)
            elif content_type == "application/strategic-merge-patch+json" and isinstance(
                body, dict
            ):
                candidate = merge_patch(current, body, strategic=True)
            else:
                raise _error(
                    415, f"the body of the request was in an unknown format: {content_type}"
                )
        except ValueError as exc:
            raise _error(422, str(exc)) from exc
        return self._update(kind, request, current, candidate)

    async def _serve_replace(self, request: kmock.Request) -> kmock.Payload:
        kind = self._kind(request, named=True, subresources=["status"])
        current = self._existing(kind, request.namespace, request.name)
        body = self._body(request)
        if not isinstance(body, dict):
            raise _error(400, "the body of the request was in an unknown format")
        if (body.get("metadata") or {}).get("name") != request.name:
            raise _error(400, "the name of the object does not match the name on the URL")
        return self._update(kind, request, current, body)

    def _update(
        self, kind: ResourceKind, request: kmock.Request, current: Obj, candidate: Obj
    ) -> Obj:
        meta = candidate.setdefault("metadata", {})
        wanted_version = meta.get("resourceVersion")
        if wanted_version and wanted_version != current["metadata"]["resourceVersion"]:
            raise _error(
                409,
                f'Operation cannot be fulfilled on {kind.plural} "{request.name}": the object has '
                "been modified; please apply your changes to the latest version and try again",
                details={"name": request.name, "kind": kind.plural},
            )
        if request.subresource == "status":
            updated = copy.deepcopy(current)
            updated["status"] = candidate.get("status")
        else:
            updated = copy.deepcopy(candidate)
            if kind.has_status:
                updated["status"] = copy.deepcopy(current.get("status"))
            for server_owned in ("name", "namespace", "uid", "creationTimestamp", "generation"):
                updated["metadata"][server_owned] = current["metadata"][server_owned]
            self._default_spec(kind, updated, current)
            _validate(kind, updated)
            if kind.plural == "pods" and _pod_spec_without_mutable(
                updated.get("spec") or {}
            ) != _pod_spec_without_mutable(current.get("spec") or {}):
                raise _invalid(
                    kind, str(request.name), [("spec", f"Forbidden: {_POD_UPDATE_FORBIDDEN}")]
                )
        updated["kind"], updated["apiVersion"] = kind.kind, kind.api_version
        updated["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if updated == current:
            return current  # a no-op write changes nothing, not even the resourceVersion

        def beyond_metadata(obj: Obj) -> Obj:
            return {k: v for k, v in obj.items() if k not in ("metadata", "status")}

        if beyond_metadata(updated) != beyond_metadata(current):
            updated["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        return self._store(kind, updated, "MODIFIED", previous=current)

    async def _serve_delete(self, request: kmock.Request) -> kmock.Payload:
        kind = self._kind(request, named=True)
        current = self._existing(kind, request.namespace, request.name)
        options = self._body(request) or {}
        preconditions = options.get("preconditions") or {} if isinstance(options, dict) else {}
        for field_name in ("uid", "resourceVersion"):
            if preconditions.get(field_name) not in (None, current["metadata"][field_name]):
                raise _error(
                    409,
                    f"Precondition failed: {field_name} in precondition: "
                    f"{preconditions[field_name]}, {field_name} in object meta: "
                    f"{current['metadata'][field_name]}",
                    details={"name": request.name, "kind": kind.plural},
                )
        gone = self._delete(kind, current, orphan=self._orphans(request, options))
        if kind.returns_deleted:
            return gone
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {
                "name": request.name,
                "kind": kind.plural,
                "uid": current["metadata"]["uid"],
            },
        }

    async def _serve_delete_collection(self, request: kmock.Request) -> kmock.Payload:
        if request.name is not None:
            raise _error(405, "the server does not allow this method on the requested resource")
        kind = self._kind(request, named=False)
        selector = Selector.from_params(kind, request.params)
        orphan = self._orphans(request, self._body(request) or {})
        items = [
            self._delete(kind, obj, orphan)
            for obj in self._all(kind, request.namespace)
            if selector.matches(obj)
        ]
        return {
            "kind": f"{kind.kind}List",
            "apiVersion": kind.api_version,
            "metadata": {"resourceVersion": str(self.version)},
            "items": items,
        }

    @staticmethod
    def _orphans(request: kmock.Request, options: Any) -> bool:
        policy = request.params.get("propagationPolicy")
        if isinstance(options, dict):
            policy = options.get("propagationPolicy") or policy
        return policy == "Orphan"

    @staticmethod
    def _body(request: kmock.Request) -> Any:
        if not request.body:
            return None
        try:
            return json.loads(request.body)
        except ValueError as exc:
            raise _error(400, f"the body of the request was in an unknown format: {exc}") from exc

    def stop_watches(self) -> None:
        for queue in self.watchers:
            queue.put_nowait(None)


def _int_param(params: Mapping[str, str], name: str, *, minimum: int) -> int | None:
    """A whole-number query parameter, or None if absent; 400 unreadable, 422 too small."""
    raw = params.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError as exc:
        raise _error(400, f"{name}: Invalid value: {raw!r}") from exc
    if value < minimum:
        relation = "greater than 0" if minimum == 1 else f"greater than or equal to {minimum}"
        raise _error(422, f"{name}: Invalid value: {value}: must be {relation}")
    return value


def _plain_text(data: bytes) -> kmock.Response:
    return kmock.Response(payload=data, headers={"Content-Type": "text/plain"})


# --- the server --------------------------------------------------------------------------------


class FakeApiServer:
    """The fake API server on 127.0.0.1:<free port>, run in a thread with its own event loop.

    ``start()`` (or ``with FakeApiServer() as server``) returns once it accepts connections;
    ``stop()`` ends open watches and closes it. Every public method may be called from any
    thread. kmock's handler is ``emulator``: reactions added there before the requests
    (``server.emulator["get /api/v1/namespaces/ns/pods/x"] << 500``) take precedence.
    """

    def __init__(self) -> None:
        self._shared = _Shared()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._emulator: _Emulator | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._clients: list[client.ApiClient] = []
        self.port = 0

    # --- life cycle ---

    def start(self) -> FakeApiServer:
        if self._thread is not None:
            raise RuntimeError("the fake API server is already started")
        self._thread = threading.Thread(target=self._run, name="fake-kube-apiserver", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the fake API server did not start within 10 s")
        if self._startup_error is not None:
            raise RuntimeError("the fake API server did not start") from self._startup_error
        return self

    def stop(self) -> None:
        for api_client in self._clients:
            api_client.close()
        self._clients.clear()
        if self._loop is not None and self._stopping is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> FakeApiServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported by start(); nothing else can see it
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        async with _Emulator(shared=self._shared) as emulator:
            self._emulator = emulator
            # Not kmock's Server: it also patches aiohttp's name resolution process-wide, which
            # several servers in several threads would undo in the wrong order.
            runner = aiohttp.web.ServerRunner(
                aiohttp.web.Server(emulator, handler_cancellation=True, access_log=None),
                shutdown_timeout=0.5,
                handle_signals=False,
            )
            await runner.setup()
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
            await aiohttp.web.SockSite(runner, sock).start()
            self._ready.set()
            try:
                await self._stopping.wait()
            finally:
                emulator.stop_watches()
                await asyncio.sleep(0)  # let the watch streams see their end and finish
                await runner.cleanup()

    # --- how to reach it ---

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def write_kubeconfig(self, path: str | Path, *, namespace: str = DEFAULT_NAMESPACE) -> Path:
        """A kubeconfig with this server as the current context's cluster, without credentials."""
        path = Path(path)
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
            "users": [{"name": "fake", "user": {}}],
            "contexts": [
                {
                    "name": "fake",
                    "context": {"cluster": "fake", "user": "fake", "namespace": namespace},
                }
            ],
            "current-context": "fake",
            "preferences": {},
        }
        path.write_text(json.dumps(config, indent=2))  # JSON is YAML, which the loader reads
        return path

    def api_client(self) -> client.ApiClient:
        """A client for this server; closed by ``stop()``."""
        configuration = client.Configuration(host=self.url)
        api_client = client.ApiClient(configuration)
        self._clients.append(api_client)
        return api_client

    @property
    def emulator(self) -> kmock.KubernetesScaffold:
        if self._emulator is None:
            raise RuntimeError("the fake API server is not started")
        return self._emulator

    # --- fault injection and the request log ---

    def fail_next(
        self,
        method: str | None,
        path_regex: str,
        status: int = 500,
        times: int = 1,
        body: Any = None,
        *,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status`` instead of handling them.

        ``method`` is an HTTP method (``None``: any); ``path_regex`` is searched in the path
        (no query); ``params`` must all be in the query (``{"watch": "true"}``). The answer is
        ``body`` or a Status for ``status``.
        """
        self._add_fault(method, path_regex, times, params, status=status, body=body)

    def delay_next(
        self,
        method: str | None,
        path_regex: str,
        seconds: float,
        times: int = 1,
        *,
        before: bool = False,
        params: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests ``seconds`` late.

        By default the request is handled first and its answer held back: a client that times
        out has still made its change, as with a real server. ``before=True`` waits first (and
        a client that gives up cancels the request). Watches always wait first.
        """
        self._add_fault(method, path_regex, times, params, delay=seconds, before=before)

    def _add_fault(
        self,
        method: str | None,
        path_regex: str,
        times: int,
        params: Mapping[str, str] | None,
        **what: Any,
    ) -> None:
        fault = _Fault(
            method=method.upper() if method and method != "*" else None,
            path=re.compile(path_regex),
            params=dict(params or {}),
            times=times,
            **what,
        )
        with self._shared.lock:
            self._shared.faults.append(fault)

    def attach_kubelet(self, kubelet: LogSource) -> None:
        """Serve the logs of the containers on ``kubelet.node`` from ``kubelet``."""

        def attach(emulator: _Emulator) -> None:
            emulator.log_sources[kubelet.node] = kubelet

        self._call(attach)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request seen so far, oldest first: (method, path, query)."""
        with self._shared.lock:
            return list(self._shared.requests)

    def requests_to(self, method: str | None, path_regex: str) -> list[RecordedRequest]:
        """The requests with this method (``None``: any) whose path matches ``path_regex``."""
        pattern = re.compile(path_regex)
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper()) and pattern.search(r.path)
        ]

    @property
    def internal_errors(self) -> list[BaseException]:
        """Exceptions in the fake itself (answered with 500): a bug here, not in the client."""
        with self._shared.lock:
            return list(self._shared.internal_errors)

    # --- the state, for assertions ---

    def objects(self, kind_plural: str, namespace: str | None = DEFAULT_NAMESPACE) -> list[Obj]:
        """The live objects of a resource (``None``: in all namespaces), by namespace and name."""
        kind = self._resource(kind_plural)
        return self._call(lambda emulator: copy.deepcopy(emulator._all(kind, namespace)))

    def get(self, kind_plural: str, namespace: str, name: str) -> Obj | None:
        """One live object, or None."""
        kind = self._resource(kind_plural)
        return self._call(lambda emulator: copy.deepcopy(emulator._current(kind, namespace, name)))

    @property
    def resource_version(self) -> str:
        """The latest resourceVersion the server handed out."""
        return self._call(lambda emulator: str(emulator.version))

    def compact(self) -> None:
        """Forget the past changes: a watch from an older resourceVersion now gets 410 Expired."""

        def forget(emulator: _Emulator) -> None:
            emulator.compacted = emulator.version
            emulator.changes.clear()

        self._call(forget)

    @staticmethod
    def _resource(kind_plural: str) -> ResourceKind:
        if kind_plural not in RESOURCES:
            raise KeyError(
                f"the fake API server has no {kind_plural!r}; it has {sorted(RESOURCES)}"
            )
        return RESOURCES[kind_plural]

    def _call(self, fn: Callable[[_Emulator], T]) -> T:
        # The state belongs to the server's loop; reading it there needs no locks.
        if self._loop is None or self._emulator is None:
            raise RuntimeError("the fake API server is not started")
        emulator = self._emulator

        async def run() -> T:
            return fn(emulator)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(10)


__all__ = [
    "DEFAULT_NAMESPACE",
    "RESOURCES",
    "FakeApiServer",
    "LogSource",
    "RecordedRequest",
    "ResourceKind",
    "Selector",
    "json_patch",
    "merge_patch",
    "parse_label_selector",
    "status_body",
]

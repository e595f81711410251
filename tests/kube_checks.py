"""Checks for serialised Kubernetes objects: what the JSON schemas let through.

Every function takes an object as plain JSON data (``ApiClient().sanitize_for_serialization``
of a model, or a document loaded from a manifest) and returns a list of problems, each naming
the object and the field; an empty list means it found none. A test asserts ``== []`` and
reads every problem at once.

kubernetes-validate checks the shape of an object against the API's schemas, not what the API
server's own validation or an admission policy refuses. That part is here:

- :func:`object_problems`, for any object: names, labels, annotations and selectors the API
  server accepts, quantities that parse and are sane, the "restricted" Pod Security Standard for
  every pod and pod template (Pods, Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs,
  CronJobs), Services, Ingresses (with ingress-nginx's stricter paths where it is the
  controller), PersistentVolumeClaims and NetworkPolicies;
- ``session_*_problems``, for the objects of one Jupyter session: what the portal promises
  about them and how they fit together (the Service selects the pod, the Ingress routes to the
  Service, the NetworkPolicy selects the pod and lets through only what it should). They take
  the expected values as plain arguments, so they import nothing from the portal.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

import kubernetes_validate
from kubernetes.utils import parse_quantity

# The Kubernetes versions whose schemas the objects must pass: one list for the session objects
# and the manifests in deploy/, the range the README states.
from tests.deploy.versions import SUPPORTED_KUBERNETES_VERSIONS

__all__ = ["SUPPORTED_KUBERNETES_VERSIONS"]

# The Kubernetes versions whose schemas the objects must pass: one list for the session objects
# and the manifests in deploy/, the range the README states.

JSON = Mapping[str, Any]

# The API server's patterns (k8s.io/apimachinery/pkg/util/validation). ASCII only, and always
# used with fullmatch: ``$`` would also match before a trailing newline.
_DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
_ENV_VAR_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
_PORT_NAME = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?")
# ingress-nginx >= 1.12 refuses other characters in Exact and Prefix paths
# (``strict-validate-path-type``, on by default).
_NGINX_STRICT_PATH = re.compile(r"/[A-Za-z0-9_/-]*")
# The API server's own rules for Exact and Prefix paths.
_INVALID_PATH_SEQUENCES = ("//", "/./", "/../", "%2f", "%2F")
_INVALID_PATH_SUFFIXES = ("/..", "/.")

PROTOCOLS = ("TCP", "UDP", "SCTP")
ACCESS_MODES = ("ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany", "ReadWriteOncePod")
# The "restricted" Pod Security Standard allows only these volume types.
RESTRICTED_VOLUME_TYPES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
RESTRICTED_ADDABLE_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
# Sanity bounds: less memory than this cannot run a Python process; more CPUs than this is a
# unit mistake (``cpu: 500`` for ``500m``).
MIN_MEMORY = "64Mi"
MAX_CPU = 256
MIN_STORAGE = "1Mi"
MAX_ANNOTATIONS_BYTES = 256 * 1024
#: Where cloud providers serve instance credentials: session pods must never reach them.
METADATA_CIDRS = ("169.254.169.254/32", "fd00:ec2::254/128")
#: The labels every object of an application should carry (kubernetes.io's recommended ones).
RECOMMENDED_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
)
# kind -> the keys leading from the object to its pod spec.
_POD_SPEC_PATHS: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "ReplicaSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
_RESTART_POLICIES: dict[str, tuple[str, ...]] = {
    "Pod": ("Always", "OnFailure", "Never"),
    "Job": ("OnFailure", "Never"),
    "CronJob": ("OnFailure", "Never"),
}


# --- Small helpers -------------------------------------------------------------------------


def _get(data: Any, *keys: str) -> Any:
    """``data[k1][k2]...``, or None where a level is missing or not a mapping."""
    for key in keys:
        if not isinstance(data, Mapping):
            return None
        data = data.get(key)
    return data


def _items(data: Any) -> list[Any]:
    return list(data) if isinstance(data, list) else []


def _mapping(data: Any) -> JSON:
    return data if isinstance(data, Mapping) else {}


def describe(obj: JSON) -> str:
    """``Kind/name``, the prefix of every problem about ``obj``."""
    name = _get(obj, "metadata", "name") or _get(obj, "metadata", "generateName") or "?"
    return f"{obj.get('kind', '?')}/{name}"


def _quantity(raw: Any) -> Decimal | None:
    try:
        amount = parse_quantity(raw)
    except (ValueError, ArithmeticError):
        return None
    # Decimal parses "NaN" and "Infinity"; the API server does not.
    return amount if isinstance(amount, Decimal) and amount.is_finite() else None


def _is_ip_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def schema_problems(obj: JSON, version: str) -> list[str]:
    """kubernetes-validate's strict check of ``obj`` against the API schemas of ``version``.

    Strict: unknown fields are errors. A version kubernetes-validate has no schemas for is a
    problem too, rather than a silent fall-back to an older one.
    """
    wanted = ".".join(version.lstrip("v").split(".")[:2])
    try:
        validated = kubernetes_validate.validate(dict(obj), version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(part) for part in exc.path)
        return [f"{describe(obj)}: {path}: {exc.message} (Kubernetes {exc.version} schema)"]
    except kubernetes_validate.SchemaNotFoundError as exc:
        return [f"{describe(obj)}: {exc.message}"]
    except kubernetes_validate.utils.VersionNotSupportedError:
        return [f"{describe(obj)}: kubernetes-validate has no schemas for Kubernetes {wanted}"]
    if validated != wanted:
        return [f"{describe(obj)}: validated against Kubernetes {validated}, not {wanted}"]
    return []


# --- Names, labels, annotations, selectors -------------------------------------------------


def dns1123_label_problems(value: Any, where: str) -> list[str]:
    """A DNS-1123 label: ``[a-z0-9-]``, alphanumeric at both ends, at most 63 characters."""
    if isinstance(value, str) and len(value) <= 63 and _DNS1123_LABEL.fullmatch(value):
        return []
    return [
        f"{where}: {value!r} is not a DNS-1123 label (at most 63 of a-z, 0-9 and '-', "
        "starting and ending with a letter or digit)"
    ]


def dns1035_label_problems(value: Any, where: str) -> list[str]:
    """A DNS-1035 label: a DNS-1123 label that starts with a letter (Service names)."""
    if isinstance(value, str) and len(value) <= 63 and _DNS1035_LABEL.fullmatch(value):
        return []
    return [
        f"{where}: {value!r} is not a DNS-1035 label (at most 63 of a-z, 0-9 and '-', "
        "starting with a letter and ending with a letter or digit)"
    ]


def dns1123_subdomain_problems(value: Any, where: str) -> list[str]:
    """A DNS-1123 subdomain: dot-separated labels, at most 253 characters (most names)."""
    if isinstance(value, str) and len(value) <= 253 and _DNS1123_SUBDOMAIN.fullmatch(value):
        return []
    return [f"{where}: {value!r} is not a DNS-1123 subdomain (lower-case, at most 253 characters)"]


def qualified_name_problems(key: Any, where: str) -> list[str]:
    """A label or annotation key: ``[prefix/]name``, prefix a DNS subdomain, name <= 63."""
    if not isinstance(key, str):
        return [f"{where}: key {key!r} is not a string"]
    prefix, slash, name = key.rpartition("/")
    problems = []
    if slash and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.fullmatch(prefix)):
        problems.append(f"{where}: the prefix of key {key!r} is not a DNS-1123 subdomain")
    if len(name) > 63 or not _QUALIFIED_NAME.fullmatch(name):
        problems.append(
            f"{where}: key {key!r} is not a qualified name (at most 63 of A-Z, a-z, 0-9, "
            "'-', '_' and '.', alphanumeric at both ends, after an optional 'prefix/')"
        )
    return problems


def label_value_problems(value: Any, where: str) -> list[str]:
    """A label value: empty, or at most 63 of ``[A-Za-z0-9-_.]``, alphanumeric at both ends."""
    if isinstance(value, str) and (
        value == "" or (len(value) <= 63 and _QUALIFIED_NAME.fullmatch(value))
    ):
        return []
    return [
        f"{where}: {value!r} is not a valid label value (empty, or at most 63 of A-Z, a-z, "
        "0-9, '-', '_' and '.', alphanumeric at both ends)"
    ]


def labels_problems(labels: Any, where: str) -> list[str]:
    """Every key and value of a label map (or a Service selector)."""
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [f"{where}: labels must be a mapping, got {labels!r}"]
    problems = []
    for key, value in labels.items():
        problems += qualified_name_problems(key, where)
        problems += label_value_problems(value, f"{where}[{key}]")
    return problems


def annotations_problems(annotations: Any, where: str) -> list[str]:
    if annotations is None:
        return []
    if not isinstance(annotations, Mapping):
        return [f"{where}: annotations must be a mapping, got {annotations!r}"]
    problems = []
    size = 0
    for key, value in annotations.items():
        problems += qualified_name_problems(key, where)
        if not isinstance(value, str):
            problems.append(f"{where}[{key}]: the value must be a string, got {value!r}")
        size += len(str(key).encode()) + len(str(value).encode())
    if size > MAX_ANNOTATIONS_BYTES:
        problems.append(f"{where}: annotations take {size} bytes, more than 256 KiB")
    return problems


def label_selector_problems(selector: Any, where: str) -> list[str]:
    """A LabelSelector (``matchLabels`` and ``matchExpressions``)."""
    if selector is None:
        return []
    if not isinstance(selector, Mapping):
        return [f"{where}: a selector must be a mapping, got {selector!r}"]
    problems = labels_problems(selector.get("matchLabels"), f"{where}.matchLabels")
    for index, expression in enumerate(_items(selector.get("matchExpressions"))):
        here = f"{where}.matchExpressions[{index}]"
        problems += qualified_name_problems(_get(expression, "key"), here)
        operator = _get(expression, "operator")
        values = _items(_get(expression, "values"))
        if operator in ("In", "NotIn"):
            if not values:
                problems.append(f"{here}: {operator} needs values")
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                problems.append(f"{here}: {operator} takes no values")
        else:
            problems.append(f"{here}: unknown operator {operator!r}")
        for value in values:
            problems += label_value_problems(value, here)
    return problems


def selector_matches(selector: Any, labels: Mapping[str, str]) -> bool:
    """Whether a selector selects an object with ``labels``.

    ``selector`` is a LabelSelector (``matchLabels``/``matchExpressions``) or a plain map, as
    a Service's. An empty LabelSelector selects everything; None selects nothing.
    """
    if not isinstance(selector, Mapping):
        return False
    if not {"matchLabels", "matchExpressions"} & set(selector):
        return all(labels.get(key) == value for key, value in selector.items())
    match_labels = _mapping(selector.get("matchLabels"))
    if any(labels.get(key) != value for key, value in match_labels.items()):
        return False
    for expression in _items(selector.get("matchExpressions")):
        key, operator = _get(expression, "key"), _get(expression, "operator")
        values = _items(_get(expression, "values"))
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def metadata_problems(obj: JSON) -> list[str]:
    """Name (by kind: a Service's is a DNS-1035 label), namespace, labels, annotations."""
    where = describe(obj)
    metadata = obj.get("metadata")
    if not isinstance(metadata, Mapping):
        return [f"{where}: no metadata"]
    problems = []
    name = metadata.get("name")
    if name is None and not metadata.get("generateName"):
        problems.append(f"{where}: no metadata.name")
    elif name is not None:
        kind = obj.get("kind")
        if kind == "Service":
            problems += dns1035_label_problems(name, f"{where}: metadata.name")
        elif kind == "Namespace":
            problems += dns1123_label_problems(name, f"{where}: metadata.name")
        else:
            problems += dns1123_subdomain_problems(name, f"{where}: metadata.name")
    if metadata.get("namespace") is not None:
        problems += dns1123_label_problems(metadata["namespace"], f"{where}: metadata.namespace")
    problems += labels_problems(metadata.get("labels"), f"{where}: metadata.labels")
    problems += annotations_problems(metadata.get("annotations"), f"{where}: metadata.annotations")
    for index, owner in enumerate(_items(metadata.get("ownerReferences"))):
        for key in ("apiVersion", "kind", "name", "uid"):
            if not _get(owner, key):
                problems.append(f"{where}: metadata.ownerReferences[{index}] has no {key}")
    return problems


def recommended_labels_problems(
    obj: JSON, keys: Iterable[str] = RECOMMENDED_LABELS, where: str | None = None
) -> list[str]:
    """The ``app.kubernetes.io/*`` labels (or ``keys``) are there and not empty."""
    where = where or f"{describe(obj)}: metadata.labels"
    labels = _mapping(_get(obj, "metadata", "labels"))
    return [f"{where}: no {key!r} label" for key in keys if not labels.get(key)]


# --- Quantities ----------------------------------------------------------------------------


def resources_problems(resources: Any, where: str) -> list[str]:
    """Requests and limits parse, are positive and sane; requests are at most the limits.

    Sane: memory at least 64Mi, CPU at most 256 cores, storage at least 1Mi.
    """
    if resources is None:
        return []
    parsed: dict[str, dict[str, Decimal]] = {"requests": {}, "limits": {}}
    problems = []
    for section in ("requests", "limits"):
        for resource, raw in _mapping(_get(resources, section)).items():
            here = f"{where}.resources.{section}.{resource}"
            amount = _quantity(raw)
            if amount is None:
                problems.append(f"{here}: {raw!r} is not a quantity")
                continue
            parsed[section][resource] = amount
            if amount <= 0:
                problems.append(f"{here}: {raw!r} is not positive")
            elif resource == "memory" and amount < parse_quantity(MIN_MEMORY):
                problems.append(f"{here}: {raw!r} is less than {MIN_MEMORY}")
            elif resource == "cpu" and amount > MAX_CPU:
                problems.append(f"{here}: {raw!r} is more than {MAX_CPU} CPUs")
            elif resource in ("storage", "ephemeral-storage") and amount < parse_quantity(
                MIN_STORAGE
            ):
                problems.append(f"{here}: {raw!r} is less than {MIN_STORAGE}")
    for resource, request in parsed["requests"].items():
        limit = parsed["limits"].get(resource)
        if limit is not None and request > limit:
            problems.append(
                f"{where}.resources: the {resource} request "
                f"({resources['requests'][resource]!r}) is above its limit "
                f"({resources['limits'][resource]!r})"
            )
    return problems


def guaranteed_qos_problems(spec: JSON, where: str) -> list[str]:
    """Every container, init containers too, requests exactly its CPU and memory limits."""
    problems = []
    for here, container in containers(spec, where, ephemeral=False):
        for resource in ("cpu", "memory"):
            request = _quantity(_get(container, "resources", "requests", resource))
            limit = _quantity(_get(container, "resources", "limits", resource))
            if request is None or limit is None or request != limit:
                problems.append(
                    f"{here}: the {resource} request and limit must be set and equal "
                    "(Guaranteed QoS)"
                )
    return problems


# --- Pods and pod templates ----------------------------------------------------------------


def pod_specs(obj: JSON) -> list[tuple[str, JSON]]:
    """The pod spec of a Pod, or of the pod template of a workload, with where it is."""
    path = _POD_SPEC_PATHS.get(str(obj.get("kind")))
    if path is None:
        return []
    spec = _get(obj, *path)
    return [(f"{describe(obj)}: {'.'.join(path)}", spec if isinstance(spec, Mapping) else {})]


def containers(spec: JSON, where: str, ephemeral: bool = True) -> list[tuple[str, JSON]]:
    """Every container of a pod spec (init, regular and ephemeral) with where it is."""
    sections = ["initContainers", "containers"] + (["ephemeralContainers"] if ephemeral else [])
    return [
        (f"{where}.{section}[{_get(container, 'name')}]", _mapping(container))
        for section in sections
        for container in _items(spec.get(section))
    ]


def restricted_security_problems(spec: JSON, where: str) -> list[str]:
    """The "restricted" Pod Security Standard, which includes "baseline".

    The pod: no host network, PID or IPC namespace, no hostPath or other volume type outside
    the restricted list. Every container, init containers included: not privileged, no
    privilege escalation, runs as non-root (not uid 0), seccomp RuntimeDefault or Localhost
    (its own or the pod's), drops ALL capabilities and adds none but NET_BIND_SERVICE, no host
    ports.
    """
    problems = []
    pod_security = _mapping(spec.get("securityContext"))
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(f"{where}.{flag} must not be true")
    for volume in _items(spec.get("volumes")):
        types = set(_mapping(volume)) - {"name"}
        here = f"{where}.volumes[{_get(volume, 'name')}]"
        if "hostPath" in types:
            problems.append(f"{here}: hostPath volumes are not allowed")
        elif not types <= RESTRICTED_VOLUME_TYPES:
            problems.append(f"{here}: volume type {sorted(types)} is not allowed (restricted)")
    for here, container in containers(spec, where):
        security = _mapping(container.get("securityContext"))
        if security.get("privileged"):
            problems.append(f"{here}: securityContext.privileged must not be true")
        if security.get("allowPrivilegeEscalation") is not False:
            problems.append(f"{here}: securityContext.allowPrivilegeEscalation must be false")
        non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
        if non_root is not True:
            problems.append(f"{here}: runAsNonRoot must be true (container or pod)")
        if security.get("runAsUser", pod_security.get("runAsUser")) == 0:
            problems.append(f"{here}: runAsUser must not be 0 (root)")
        seccomp = security.get("seccompProfile") or pod_security.get("seccompProfile")
        if _get(seccomp, "type") not in ("RuntimeDefault", "Localhost"):
            problems.append(
                f"{here}: seccompProfile.type must be RuntimeDefault or Localhost "
                "(container or pod)"
            )
        capabilities = _mapping(security.get("capabilities"))
        if "ALL" not in _items(capabilities.get("drop")):
            problems.append(f"{here}: securityContext.capabilities.drop must contain ALL")
        added = set(_items(capabilities.get("add"))) - RESTRICTED_ADDABLE_CAPABILITIES
        if added:
            problems.append(f"{here}: capabilities {sorted(added)} must not be added")
        for port in _items(container.get("ports")):
            if _get(port, "hostPort"):
                problems.append(f"{here}: hostPort {_get(port, 'hostPort')} is not allowed")
    return problems


def _port_name_problems(name: Any, where: str) -> list[str]:
    # IANA_SVC_NAME: at most 15 of a-z, 0-9 and '-', at least one letter, no '--'.
    if (
        isinstance(name, str)
        and len(name) <= 15
        and _PORT_NAME.fullmatch(name)
        and "--" not in name
        and re.search("[a-z]", name)
    ):
        return []
    return [
        f"{where}: port name {name!r} is not an IANA service name (at most 15 of a-z, 0-9 "
        "and '-', with a letter, no '--', alphanumeric at both ends)"
    ]


def _port_number_problems(number: Any, where: str) -> list[str]:
    if isinstance(number, int) and not isinstance(number, bool) and 1 <= number <= 65535:
        return []
    return [f"{where}: {number!r} is not a port number (1-65535)"]


def _port_ref_problems(port: Any, where: str) -> list[str]:
    """A port given by number or by name (an IntOrString)."""
    if isinstance(port, str):
        return _port_name_problems(port, where)
    return _port_number_problems(port, where)


def pod_spec_problems(spec: JSON, where: str, kind: str = "Pod") -> list[str]:
    """Containers, volumes, mounts, env, ports, probes and resources of one pod spec."""
    problems = restricted_security_problems(spec, where)
    policy = spec.get("restartPolicy")
    allowed_policies = _RESTART_POLICIES.get(kind, ("Always",))
    if policy is not None and policy not in allowed_policies:
        problems.append(f"{where}.restartPolicy {policy!r} is not one of {allowed_policies}")
    if not _items(spec.get("containers")):
        problems.append(f"{where}: no containers")
    volumes: dict[str, JSON] = {}
    for volume in _items(spec.get("volumes")):
        name = _get(volume, "name")
        here = f"{where}.volumes[{name}]"
        problems += dns1123_label_problems(name, f"{here}.name")
        if name in volumes:
            problems.append(f"{here}: volume name used twice")
        volumes[str(name)] = _mapping(volume)
        claim = _get(volume, "persistentVolumeClaim", "claimName")
        if claim is not None:
            problems += dns1123_subdomain_problems(claim, f"{here}.persistentVolumeClaim")
    names: set[str] = set()
    port_names: set[str] = set()
    for here, container in containers(spec, where):
        name = container.get("name")
        problems += dns1123_label_problems(name, f"{here}.name")
        if name in names:
            problems.append(f"{here}: container name used twice")
        names.add(str(name))
        image = container.get("image")
        if not isinstance(image, str) or not image.strip():
            problems.append(f"{here}: no image")
        for env in _items(container.get("env")):
            env_name = _get(env, "name")
            if not isinstance(env_name, str) or not _ENV_VAR_NAME.fullmatch(env_name):
                problems.append(f"{here}.env: {env_name!r} is not a valid variable name")
        own_ports: set[str] = set()
        for port in _items(container.get("ports")):
            problems += _port_number_problems(_get(port, "containerPort"), f"{here}.ports")
            if _get(port, "protocol") not in (None, *PROTOCOLS):
                problems.append(f"{here}.ports: unknown protocol {_get(port, 'protocol')!r}")
            port_name = _get(port, "name")
            if port_name is not None:
                problems += _port_name_problems(port_name, f"{here}.ports")
                if port_name in port_names:
                    problems.append(f"{here}.ports: port name {port_name!r} used twice")
                port_names.add(port_name)
                own_ports.add(port_name)
        mount_paths: set[str] = set()
        for mount in _items(container.get("volumeMounts")):
            mount_where = f"{here}.volumeMounts[{_get(mount, 'name')}]"
            if _get(mount, "name") not in volumes:
                problems.append(f"{mount_where}: no volume of that name")
            path = _get(mount, "mountPath")
            if not isinstance(path, str) or not path.startswith("/"):
                problems.append(f"{mount_where}: mountPath {path!r} is not absolute")
            elif path in mount_paths:
                problems.append(f"{mount_where}: mountPath {path!r} used twice")
            mount_paths.add(str(path))
            sub_path = _get(mount, "subPath")
            if sub_path is not None and (sub_path.startswith("/") or ".." in sub_path.split("/")):
                problems.append(f"{mount_where}: subPath {sub_path!r} must be relative, no '..'")
        for probe_name in ("startupProbe", "livenessProbe", "readinessProbe"):
            http_get = _get(container, probe_name, "httpGet")
            if not isinstance(http_get, Mapping):
                continue
            probe_where = f"{here}.{probe_name}.httpGet"
            path = http_get.get("path")
            if path is not None and not str(path).startswith("/"):
                problems.append(f"{probe_where}: path {path!r} is not absolute")
            port = http_get.get("port")
            problems += _port_ref_problems(port, probe_where)
            if isinstance(port, str) and port not in own_ports:
                problems.append(f"{probe_where}: the container has no port named {port!r}")
        problems += resources_problems(container.get("resources"), here)
    return problems


def workload_problems(obj: JSON) -> list[str]:
    """Pod specs of a Pod or workload; a workload's selector selects its own template."""
    problems = []
    kind = str(obj.get("kind"))
    for where, spec in pod_specs(obj):
        problems += pod_spec_problems(spec, where, kind)
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        where = describe(obj)
        selector = _get(obj, "spec", "selector")
        template_labels = _mapping(_get(obj, "spec", "template", "metadata", "labels"))
        problems += label_selector_problems(selector, f"{where}: spec.selector")
        problems += labels_problems(template_labels, f"{where}: spec.template.metadata.labels")
        if not selector_matches(selector, template_labels):
            problems.append(f"{where}: spec.selector does not select the pod template's labels")
    if kind == "CronJob":
        template_metadata = _get(obj, "spec", "jobTemplate", "spec", "template", "metadata")
    else:
        template_metadata = _get(obj, "spec", "template", "metadata")
    problems += labels_problems(
        _get(template_metadata, "labels"), f"{describe(obj)}: pod template labels"
    )
    problems += annotations_problems(
        _get(template_metadata, "annotations"), f"{describe(obj)}: pod template annotations"
    )
    return problems


# --- Services, Ingresses, claims, network policies -----------------------------------------


def service_problems(obj: JSON) -> list[str]:
    where = f"{describe(obj)}: spec"
    spec = _mapping(obj.get("spec"))
    problems = []
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        problems.append(f"{where}.type {kind!r} is unknown")
    problems += labels_problems(spec.get("selector"), f"{where}.selector")
    ports = _items(spec.get("ports"))
    names = [_get(port, "name") for port in ports]
    if len(ports) > 1 and (None in names or len(set(names)) != len(names)):
        problems.append(f"{where}.ports: with several ports, each needs a name of its own")
    for port in ports:
        here = f"{where}.ports[{_get(port, 'name')}]"
        if _get(port, "name") is not None:
            problems += _port_name_problems(_get(port, "name"), here)
        problems += _port_number_problems(_get(port, "port"), here)
        if _get(port, "targetPort") is not None:
            problems += _port_ref_problems(_get(port, "targetPort"), f"{here}.targetPort")
        if _get(port, "protocol") not in (None, *PROTOCOLS):
            problems.append(f"{here}: unknown protocol {_get(port, 'protocol')!r}")
    return problems


def ingress_path_problems(path: Any, path_type: Any, where: str, nginx: bool) -> list[str]:
    """The API server's rules for an Ingress path, and ingress-nginx's stricter ones."""
    if path_type not in ("Exact", "Prefix", "ImplementationSpecific"):
        return [f"{where}: pathType {path_type!r} is not Exact, Prefix or ImplementationSpecific"]
    if path_type == "ImplementationSpecific":
        return []
    if not isinstance(path, str) or not path.startswith("/"):
        return [f"{where}: path {path!r} is not absolute"]
    problems = [
        f"{where}: path {path!r} contains {sequence!r} (the API server refuses it)"
        for sequence in _INVALID_PATH_SEQUENCES
        if sequence in path
    ] + [
        f"{where}: path {path!r} ends with {suffix!r} (the API server refuses it)"
        for suffix in _INVALID_PATH_SUFFIXES
        if path.endswith(suffix)
    ]
    if nginx and not _NGINX_STRICT_PATH.fullmatch(path):
        problems.append(
            f"{where}: path {path!r} has characters other than A-Z, a-z, 0-9, '_', '-' and "
            f"'/', which ingress-nginx (strict-validate-path-type) refuses for pathType "
            f"{path_type}"
        )
    return problems


def _backend_problems(backend: Any, where: str) -> list[str]:
    service = _get(backend, "service")
    if not isinstance(service, Mapping):
        return [] if _get(backend, "resource") else [f"{where}: no service backend"]
    problems = dns1035_label_problems(service.get("name"), f"{where}.service.name")
    port = _mapping(service.get("port"))
    if ("name" in port) == ("number" in port):
        problems.append(f"{where}.service.port: give exactly one of name and number")
    elif "name" in port:
        problems += _port_name_problems(port["name"], f"{where}.service.port")
    else:
        problems += _port_number_problems(port["number"], f"{where}.service.port")
    return problems


def _host_problems(host: Any, where: str) -> list[str]:
    if not isinstance(host, str):
        return [f"{where}: host {host!r} is not a string"]
    if _is_ip_address(host):
        return [f"{where}: host {host!r} must be a DNS name, not an IP address"]
    name = host[2:] if host.startswith("*.") else host
    return dns1123_subdomain_problems(name, where)


def ingress_problems(obj: JSON, nginx_strict_paths: bool | None = None) -> list[str]:
    """Class, hosts, paths and backends of an Ingress.

    ``nginx_strict_paths``: also apply ingress-nginx's path rules; by default when the class
    is ``nginx`` or an annotation is ingress-nginx's.
    """
    where = f"{describe(obj)}: spec"
    spec = _mapping(obj.get("spec"))
    annotations = _mapping(_get(obj, "metadata", "annotations"))
    if nginx_strict_paths is None:
        nginx_strict_paths = spec.get("ingressClassName") == "nginx" or any(
            str(key).startswith("nginx.ingress.kubernetes.io/") for key in annotations
        )
    problems = []
    if spec.get("ingressClassName") is not None:
        problems += dns1123_subdomain_problems(
            spec["ingressClassName"], f"{where}.ingressClassName"
        )
    if spec.get("defaultBackend") is not None:
        problems += _backend_problems(spec["defaultBackend"], f"{where}.defaultBackend")
    if not _items(spec.get("rules")) and spec.get("defaultBackend") is None:
        problems.append(f"{where}: neither rules nor a defaultBackend")
    for index, rule in enumerate(_items(spec.get("rules"))):
        here = f"{where}.rules[{index}]"
        if _get(rule, "host") is not None:
            problems += _host_problems(_get(rule, "host"), f"{here}.host")
        for path in _items(_get(rule, "http", "paths")):
            path_where = f"{here}.http.paths[{_get(path, 'path')}]"
            problems += ingress_path_problems(
                _get(path, "path"), _get(path, "pathType"), path_where, nginx_strict_paths
            )
            problems += _backend_problems(_get(path, "backend"), f"{path_where}.backend")
    for index, tls in enumerate(_items(spec.get("tls"))):
        for host in _items(_get(tls, "hosts")):
            problems += _host_problems(host, f"{where}.tls[{index}].hosts")
        if _get(tls, "secretName") is not None:
            problems += dns1123_subdomain_problems(
                _get(tls, "secretName"), f"{where}.tls[{index}].secretName"
            )
    return problems


def pvc_problems(obj: JSON) -> list[str]:
    where = f"{describe(obj)}: spec"
    spec = _mapping(obj.get("spec"))
    problems = []
    modes = _items(spec.get("accessModes"))
    if not modes:
        problems.append(f"{where}.accessModes: none given")
    problems += [
        f"{where}.accessModes: {mode!r} is not one of {ACCESS_MODES}"
        for mode in modes
        if mode not in ACCESS_MODES
    ]
    storage = _get(spec, "resources", "requests", "storage")
    if storage is None and not spec.get("volumeName"):
        problems.append(f"{where}.resources.requests.storage: not given")
    problems += resources_problems(spec.get("resources"), where)
    if spec.get("storageClassName"):
        problems += dns1123_subdomain_problems(
            spec["storageClassName"], f"{where}.storageClassName"
        )
    if spec.get("volumeMode") not in (None, "Filesystem", "Block"):
        problems.append(f"{where}.volumeMode {spec.get('volumeMode')!r} is unknown")
    return problems


def _ip_block_problems(block: JSON, where: str) -> list[str]:
    try:
        network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
    except ValueError:
        return [f"{where}.cidr: {block.get('cidr')!r} is not a CIDR"]
    problems = []
    if str(network) != block.get("cidr"):
        problems.append(f"{where}.cidr: {block.get('cidr')!r} is not in canonical form ({network})")
    for excepted in _items(block.get("except")):
        try:
            inner = ipaddress.ip_network(str(excepted), strict=True)
        except ValueError:
            problems.append(f"{where}.except: {excepted!r} is not a canonical CIDR")
            continue
        if (
            inner.version != network.version
            or not inner.subnet_of(network)  # type: ignore[arg-type]
            or inner == network
        ):
            problems.append(f"{where}.except: {excepted!r} is not strictly inside {network}")
    return problems


def _peer_problems(peer: Any, where: str) -> list[str]:
    peer = _mapping(peer)
    selectors = {"podSelector", "namespaceSelector"} & set(peer)
    if "ipBlock" in peer:
        if selectors:
            return [f"{where}: an ipBlock goes alone, without selectors"]
        return _ip_block_problems(_mapping(peer["ipBlock"]), f"{where}.ipBlock")
    if not selectors:
        return [f"{where}: a peer needs an ipBlock or a selector"]
    problems = []
    for key in sorted(selectors):
        problems += label_selector_problems(peer[key], f"{where}.{key}")
    return problems


def _policy_port_problems(port: Any, where: str) -> list[str]:
    problems = []
    if _get(port, "protocol") not in (None, *PROTOCOLS):
        problems.append(f"{where}: unknown protocol {_get(port, 'protocol')!r}")
    number = _get(port, "port")
    if number is not None:
        problems += _port_ref_problems(number, where)
    end = _get(port, "endPort")
    if end is not None:
        if not isinstance(number, int):
            problems.append(f"{where}: endPort needs a numeric port")
        else:
            problems += _port_number_problems(end, f"{where}.endPort")
            if isinstance(end, int) and end < number:
                problems.append(f"{where}: endPort {end} is below port {number}")
    return problems


def network_policy_problems(obj: JSON) -> list[str]:
    where = f"{describe(obj)}: spec"
    spec = _mapping(obj.get("spec"))
    problems = []
    if "podSelector" not in spec:
        problems.append(f"{where}: no podSelector")
    problems += label_selector_problems(spec.get("podSelector"), f"{where}.podSelector")
    problems += [
        f"{where}.policyTypes: {kind!r} is not Ingress or Egress"
        for kind in _items(spec.get("policyTypes"))
        if kind not in ("Ingress", "Egress")
    ]
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for index, rule in enumerate(_items(spec.get(direction))):
            here = f"{where}.{direction}[{index}]"
            for number, peer in enumerate(_items(_get(rule, peers_key))):
                problems += _peer_problems(peer, f"{here}.{peers_key}[{number}]")
            for number, port in enumerate(_items(_get(rule, "ports"))):
                problems += _policy_port_problems(port, f"{here}.ports[{number}]")
    return problems


def object_problems(obj: JSON, nginx_strict_paths: bool | None = None) -> list[str]:
    """Every general check that applies to ``obj``'s kind (metadata always)."""
    if not isinstance(obj, Mapping):
        return [f"{obj!r} is not an object"]
    if str(obj.get("apiVersion", "")).startswith("kustomize.config.k8s.io/"):
        return []  # kustomize's own files, not objects sent to the cluster
    problems = metadata_problems(obj)
    kind = obj.get("kind")
    if kind in _POD_SPEC_PATHS:
        problems += workload_problems(obj)
    elif kind == "Service":
        problems += service_problems(obj)
    elif kind == "Ingress":
        problems += ingress_problems(obj, nginx_strict_paths)
    elif kind == "PersistentVolumeClaim":
        problems += pvc_problems(obj)
    elif kind == "NetworkPolicy":
        problems += network_policy_problems(obj)
    return problems


# --- One session's objects -----------------------------------------------------------------


def _env(container: JSON) -> dict[str, Any]:
    return {_get(env, "name"): _get(env, "value") for env in _items(container.get("env"))}


def session_pod_problems(
    pod: JSON,
    *,
    deadline_seconds: int,
    base_url: str,
    home_claim: str,
    scratch_claim: str,
    scratch_subpath: str | None,
    library_mount: str | None,
    labels: Mapping[str, str],
) -> list[str]:
    """What the portal promises about a session's pod, beyond :func:`object_problems`.

    The cluster ends it at the deadline and never restarts it; no service account token;
    Guaranteed QoS; the ``labels`` (with their values) and the recommended labels; every
    server container is ready when ``<base_url>...`` answers, mounts the home claim and keeps
    ``pip``/``conda`` installs in it, mounts the scratch claim at the user's folder
    (``scratch_subpath``; None: no scratch at all) and the notebooks library read-only at
    ``library_mount`` (None: no library).
    """
    where = f"{describe(pod)}: spec"
    spec = _mapping(pod.get("spec"))
    problems = []
    if pod.get("kind") != "Pod":
        problems.append(f"{describe(pod)}: not a Pod")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append(f"{where}.automountServiceAccountToken must be false")
    if spec.get("activeDeadlineSeconds") != deadline_seconds:
        problems.append(
            f"{where}.activeDeadlineSeconds is {spec.get('activeDeadlineSeconds')!r}, "
            f"not the session's {deadline_seconds}"
        )
    if spec.get("restartPolicy") != "Never":
        problems.append(f"{where}.restartPolicy is {spec.get('restartPolicy')!r}, not 'Never'")
    problems += guaranteed_qos_problems(spec, where)
    problems += recommended_labels_problems(pod)
    pod_labels = _mapping(_get(pod, "metadata", "labels"))
    problems += [
        f"{describe(pod)}: metadata.labels[{key}] is {pod_labels.get(key)!r}, not {value!r}"
        for key, value in labels.items()
        if pod_labels.get(key) != value
    ]
    volumes = {_get(volume, "name"): _mapping(volume) for volume in _items(spec.get("volumes"))}

    def claim_volumes(claim: str) -> list[str]:
        return [
            str(name)
            for name, volume in volumes.items()
            if _get(volume, "persistentVolumeClaim", "claimName") == claim
        ]

    home_volumes = claim_volumes(home_claim)
    scratch_volumes = claim_volumes(scratch_claim)
    if len(home_volumes) != 1:
        problems.append(f"{where}.volumes: {len(home_volumes)} volumes of claim {home_claim!r}")
    if scratch_subpath is None and scratch_volumes:
        problems.append(f"{where}.volumes: the scratch claim {scratch_claim!r} without scratch")
    if scratch_subpath is not None and len(scratch_volumes) != 1:
        problems.append(
            f"{where}.volumes: {len(scratch_volumes)} volumes of claim {scratch_claim!r}"
        )
    servers = _items(spec.get("containers"))
    if not servers:
        problems.append(f"{where}: no server container")
    for container in servers:
        here = f"{where}.containers[{_get(container, 'name')}]"
        mounts = [_mapping(mount) for mount in _items(_get(container, "volumeMounts"))]
        home_mounts = [mount for mount in mounts if mount.get("name") in home_volumes]
        home = ""
        if len(home_mounts) != 1 or home_mounts[0].get("subPath") or home_mounts[0].get("readOnly"):
            problems.append(f"{here}: must mount the home claim once, whole and writable")
        else:
            home = str(home_mounts[0].get("mountPath"))
        env = _env(container)
        for variable in ("PYTHONUSERBASE", "CONDA_ENVS_DIRS"):
            value = env.get(variable)
            if not home or not isinstance(value, str) or not value.startswith(f"{home}/"):
                problems.append(f"{here}: env {variable}={value!r} is not inside the home {home!r}")
        probe_path = _get(container, "readinessProbe", "httpGet", "path")
        if not isinstance(probe_path, str) or not probe_path.startswith(base_url):
            problems.append(
                f"{here}: the readiness probe's path {probe_path!r} is not under {base_url!r}"
            )
        scratch_mounts = [mount for mount in mounts if mount.get("name") in scratch_volumes]
        if scratch_subpath is not None and [m.get("subPath") for m in scratch_mounts] != [
            scratch_subpath
        ]:
            problems.append(
                f"{here}: must mount the scratch claim once with subPath {scratch_subpath!r}, "
                f"got {[m.get('subPath') for m in scratch_mounts]}"
            )
        library = [mount for mount in mounts if mount.get("mountPath") == library_mount]
        if library_mount is not None and (
            len(library) != 1 or library[0].get("readOnly") is not True
        ):
            problems.append(f"{here}: must mount the library at {library_mount!r} read-only")
    return problems


def session_service_problems(service: JSON, pod: JSON) -> list[str]:
    """A ClusterIP Service that selects the pod and targets one of its container ports."""
    where = f"{describe(service)}: spec"
    spec = _mapping(service.get("spec"))
    problems = []
    if spec.get("type", "ClusterIP") != "ClusterIP":
        problems.append(f"{where}.type must be ClusterIP (only the Ingress reaches a session)")
    selector = spec.get("selector")
    if not selector:
        problems.append(f"{where}.selector is empty")
    elif not selector_matches(selector, _mapping(_get(pod, "metadata", "labels"))):
        problems.append(f"{where}.selector does not select {describe(pod)}")
    pod_ports = [
        _mapping(port)
        for _, container in containers(_mapping(pod.get("spec")), "")
        for port in _items(container.get("ports"))
    ]
    names = {port.get("name") for port in pod_ports}
    numbers = {port.get("containerPort") for port in pod_ports}
    if not _items(spec.get("ports")):
        problems.append(f"{where}.ports: none")
    for port in _items(spec.get("ports")):
        target = _get(port, "targetPort") or _get(port, "port")
        if target not in (names if isinstance(target, str) else numbers):
            problems.append(f"{where}.ports: targetPort {target!r} is no port of {describe(pod)}")
    return problems


def session_ingress_problems(
    ingress: JSON, service: JSON, *, base_url: str, session_id: str, host: str | None
) -> list[str]:
    """One rule on ``host`` routing the Prefix ``base_url`` to the Service's named port,
    guarded by ingress-nginx's forward auth at the portal's ``.../<session_id>/``."""
    where = f"{describe(ingress)}: spec"
    problems = []
    rules = _items(_get(ingress, "spec", "rules"))
    paths = [path for rule in rules for path in _items(_get(rule, "http", "paths"))]
    if len(rules) != 1 or len(paths) != 1:
        return [f"{where}: want one rule with one path, got {len(rules)} rules, {len(paths)} paths"]
    if _get(rules[0], "host") != host:
        problems.append(f"{where}.rules[0].host is {_get(rules[0], 'host')!r}, not {host!r}")
    path = _mapping(paths[0])
    if path.get("path") != base_url or path.get("pathType") != "Prefix":
        problems.append(
            f"{where}: routes {path.get('path')!r} ({path.get('pathType')}), "
            f"not {base_url!r} (Prefix)"
        )
    backend = _mapping(_get(path, "backend", "service"))
    if backend.get("name") != _get(service, "metadata", "name"):
        problems.append(f"{where}: the backend {backend.get('name')!r} is not {describe(service)}")
    port_names = {_get(port, "name") for port in _items(_get(service, "spec", "ports"))}
    port_name = _get(backend, "port", "name")
    if port_name is None or port_name not in port_names:
        problems.append(
            f"{where}: the backend port {backend.get('port')!r} is not a port name of "
            f"{describe(service)} {sorted(map(str, port_names))}"
        )
    auth_url = _get(ingress, "metadata", "annotations", "nginx.ingress.kubernetes.io/auth-url")
    if (
        not isinstance(auth_url, str)
        or not auth_url.startswith(("http://", "https://"))
        or not auth_url.endswith(f"/{session_id}/")
    ):
        problems.append(
            f"{describe(ingress)}: the auth-url annotation {auth_url!r} is not an http(s) URL "
            f"ending in '/{session_id}/'"
        )
    # The server's credential comes from the forward-auth's answer (no token in the URL):
    # ingress-nginx copies each listed header of the answer over the client's own
    # (``proxy_set_header``), and takes names of [A-Za-z0-9_-] only.
    handed = _get(
        ingress, "metadata", "annotations", "nginx.ingress.kubernetes.io/auth-response-headers"
    )
    names = [name.strip() for name in handed.split(",")] if isinstance(handed, str) else []
    if "Authorization" not in names or not all(
        re.fullmatch(r"[A-Za-z0-9_-]+", name) for name in names
    ):
        problems.append(
            f"{describe(ingress)}: the auth-response-headers annotation {handed!r} does not "
            "hand the server's credential (Authorization) from the forward-auth's answer"
        )
    return problems


def _ports(rule: JSON) -> set[tuple[str, Any]]:
    return {
        (str(_get(port, "protocol") or "TCP"), _get(port, "port"))
        for port in _items(rule.get("ports"))
    }


def _ip_blocks(rule: JSON, key: str) -> list[JSON] | None:
    """The ipBlocks of a rule's peers; None when a peer is something else (or none given)."""
    peers = [_mapping(peer) for peer in _items(rule.get(key))]
    if not peers or any(set(peer) != {"ipBlock"} for peer in peers):
        return None
    return [_mapping(peer["ipBlock"]) for peer in peers]


def _is_dns_peer(peer: Any) -> bool:
    return (
        set(_mapping(peer)) == {"namespaceSelector", "podSelector"}
        and _get(peer, "namespaceSelector")
        == {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}
        and _get(peer, "podSelector") == {"matchLabels": {"k8s-app": "kube-dns"}}
    )


def session_network_policy_problems(
    policy: JSON,
    *,
    pod_labels: Mapping[str, str],
    allow_cidrs: Iterable[str],
    router_namespace: str,
    router_pod_labels: Mapping[str, str],
    server_port: int,
    metadata_cidrs: Iterable[str] = METADATA_CIDRS,
) -> list[str]:
    """The sessions' NetworkPolicy selects the pod and lets through exactly this.

    In: only the router's pods (its namespace and pod labels), TCP ``server_port``. Out: DNS
    (UDP and TCP 53) to kube-dns in kube-system; TCP 80 and 443 to IP blocks, each excepting
    the cloud metadata address of its family; any port to exactly ``allow_cidrs``. Nothing
    else.
    """
    where = f"{describe(policy)}: spec"
    spec = _mapping(policy.get("spec"))
    problems = []
    if not selector_matches(spec.get("podSelector"), pod_labels):
        problems.append(f"{where}.podSelector does not select the session pod {dict(pod_labels)}")
    if set(_items(spec.get("policyTypes"))) != {"Ingress", "Egress"}:
        problems.append(f"{where}.policyTypes must be Ingress and Egress")
    router_peer = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": router_namespace}},
        "podSelector": {"matchLabels": dict(router_pod_labels)},
    }
    ingress = [_mapping(rule) for rule in _items(spec.get("ingress"))]
    if (
        len(ingress) != 1
        or _items(ingress[0].get("from")) != [router_peer]
        or _ports(ingress[0]) != {("TCP", server_port)}
    ):
        problems.append(
            f"{where}.ingress must be one rule, from {router_peer} to TCP {server_port}; "
            f"got {ingress}"
        )
    metadata = [ipaddress.ip_network(cidr) for cidr in metadata_cidrs]
    allowed: list[str] = []
    kinds: list[str] = []
    for index, rule in enumerate(_mapping(rule) for rule in _items(spec.get("egress"))):
        here = f"{where}.egress[{index}]"
        peers = _items(rule.get("to"))
        blocks = _ip_blocks(rule, "to")
        if peers and all(_is_dns_peer(peer) for peer in peers):
            kinds.append("dns")
            if _ports(rule) != {("UDP", 53), ("TCP", 53)}:
                problems.append(f"{here}: the DNS rule must allow exactly UDP and TCP 53")
        elif blocks is not None and rule.get("ports"):
            kinds.append("web")
            if _ports(rule) != {("TCP", 80), ("TCP", 443)}:
                problems.append(f"{here}: to IP blocks only TCP 80 and 443, got {_ports(rule)}")
            for block in blocks:
                try:
                    network = ipaddress.ip_network(str(block.get("cidr")), strict=False)
                    excepted = [ipaddress.ip_network(str(e)) for e in _items(block.get("except"))]
                except ValueError:
                    problems.append(f"{here}: {block} is not a valid ipBlock")
                    continue
                for address in metadata:
                    if address.version == network.version and network.overlaps(address):
                        if not any(
                            e.version == address.version and address.subnet_of(e)  # type: ignore[arg-type]
                            for e in excepted
                        ):
                            problems.append(f"{here}: {network} does not except {address}")
        elif blocks is not None:
            kinds.append("allow-list")
            for block in blocks:
                if block.get("except"):
                    problems.append(f"{here}: an allow-list block has exceptions: {block}")
                allowed.append(str(block.get("cidr")))
        else:
            problems.append(f"{here}: a rule that is neither DNS, web nor allow-list: {rule}")
    if kinds.count("dns") != 1 or kinds.count("web") != 1:
        problems.append(f"{where}.egress: want one DNS rule and one web rule, got {kinds}")
    if sorted(allowed) != sorted(allow_cidrs):
        problems.append(
            f"{where}.egress: the allow-list is {sorted(allowed)}, not {sorted(allow_cidrs)}"
        )
    return problems

"""Checks of the rendered manifests that schema validation does not make.

kubernetes-validate checks every object against the API's schema (fields, types); it does not
see invalid names, bad label values, requests above limits, a missing securityContext, a
reference to an object that does not exist, a selector that selects nothing, or settings that
contradict each other. Each check here takes the rendered objects (:class:`Manifests`) and
returns the problems it found, one readable line each; an empty list means the check passed.
``test_checks.py`` feeds each one a broken object to prove it can fail.
"""

from __future__ import annotations

import ast
import ipaddress
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from kubernetes.utils import parse_quantity

from tests.deploy.kustomize_lite import split_image

Obj = dict[str, Any]
Check = Callable[["Manifests"], list[str]]

PORTAL_NAMESPACE = "jupyter-portal"
PART_OF = "jupyter-launcher-portal"
COMPONENT = "app.kubernetes.io/component"
CONFIG_MAP = "portal-config"

# The API server's patterns (k8s.io/apimachinery/pkg/util/validation), always used with
# fullmatch: "$" would also match before a trailing newline.
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_DNS_1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")
_PORT_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")

CLUSTER_SCOPED = {
    "Namespace",
    "PriorityClass",
    "PersistentVolume",
    "ClusterRole",
    "ClusterRoleBinding",
    "StorageClass",
}
# Kinds whose names must be DNS-1123 labels (not subdomains): namespaces, and Jobs, whose name
# becomes the value of their pods' job-name label.
DNS_LABEL_KINDS = {"Namespace", "Job"}
# Services need a DNS-1035 label (starting with a letter): their name is a DNS name.
DNS_1035_KINDS = {"Service"}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "ReplicaSet", "Pod"}
RESTRICTED_SECCOMP = {"RuntimeDefault", "Localhost"}
# Verbs that hand out more rights than they name.
ESCALATING_VERBS = {"escalate", "bind", "impersonate", "*"}


def is_dns_label(name: str) -> bool:
    return len(name) <= 63 and bool(_DNS_LABEL.fullmatch(name))


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= 253 and bool(_DNS_SUBDOMAIN.fullmatch(name))


def is_label_key(key: str) -> bool:
    prefix, slash, name = key.rpartition("/")
    if slash and not is_dns_subdomain(prefix):
        return False
    return len(name) <= 63 and bool(_QUALIFIED_NAME.fullmatch(name))


def is_label_value(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 63 and bool(_LABEL_VALUE.fullmatch(value))


def is_port_name(name: str) -> bool:
    # IANA service names: at most 15 characters, a letter somewhere, no "--".
    return (
        len(name) <= 15
        and bool(_PORT_NAME.fullmatch(name))
        and "--" not in name
        and any(char.isalpha() for char in name)
    )


@dataclass(frozen=True)
class PodTemplate:
    """A pod spec in a workload, with where it came from."""

    owner: Obj
    spec: Obj
    labels: dict[str, str]

    @property
    def namespace(self) -> str:
        return str(self.owner["metadata"].get("namespace", ""))

    @property
    def where(self) -> str:
        return f"{self.owner['kind']} {self.namespace}/{self.owner['metadata']['name']}"

    def containers(self) -> list[Obj]:
        return [*self.spec.get("initContainers", []), *self.spec.get("containers", [])]


@dataclass
class Manifests:
    """The rendered objects, and the Secrets the operator creates beside them."""

    objects: list[Obj]
    # Secrets deliberately not rendered (deploy/base/secret.example.yaml documents them).
    external_secrets: list[Obj] = field(default_factory=list)

    def of_kind(self, kind: str) -> list[Obj]:
        return [obj for obj in self.objects if obj.get("kind") == kind]

    def find(self, kind: str, namespace: str, name: str) -> Obj | None:
        for obj in self.objects:
            meta = obj.get("metadata", {})
            if (
                obj.get("kind") == kind
                and meta.get("namespace", "") == namespace
                and meta.get("name") == name
            ):
                return obj
        return None

    def secret(self, namespace: str, name: str) -> Obj | None:
        found = self.find("Secret", namespace, name)
        if found is not None:
            return found
        for obj in self.external_secrets:
            meta = obj["metadata"]
            if meta.get("namespace", "") == namespace and meta["name"] == name:
                return obj
        return None

    def pod_templates(self) -> list[PodTemplate]:
        templates = []
        for obj in self.objects:
            kind = obj.get("kind")
            if kind not in WORKLOAD_KINDS:
                continue
            if kind == "Pod":
                template: Obj = {"metadata": obj.get("metadata", {}), "spec": obj.get("spec", {})}
            elif kind == "CronJob":
                template = obj["spec"]["jobTemplate"]["spec"]["template"]
            else:
                template = obj.get("spec", {}).get("template", {})
            labels = template.get("metadata", {}).get("labels", {}) or {}
            templates.append(PodTemplate(obj, template.get("spec", {}), dict(labels)))
        return templates

    def workloads(self, component: str) -> list[Obj]:
        return [
            obj
            for obj in self.objects
            if obj.get("kind") in WORKLOAD_KINDS
            and obj.get("metadata", {}).get("labels", {}).get(COMPONENT) == component
        ]

    def config(self) -> dict[str, str]:
        """The portal's settings: the ConfigMap the web reads with envFrom (after kustomize's
        hash suffix), else one named portal-config."""
        for template in self.pod_templates():
            if template.labels.get(COMPONENT) != "web":
                continue
            for container in template.containers():
                for source in container.get("envFrom", []):
                    ref = source.get("configMapRef", {}).get("name", "")
                    found = self.find("ConfigMap", template.namespace, ref)
                    if found is not None:
                        return dict(found.get("data", {}))
        found = self.find("ConfigMap", PORTAL_NAMESPACE, CONFIG_MAP)
        return dict(found.get("data", {})) if found else {}

    def sessions_namespace(self) -> str:
        return self.config().get("KUBE_NAMESPACE", "jupyter-sessions")


def _name(obj: Obj) -> str:
    meta = obj.get("metadata", {})
    namespace = meta.get("namespace")
    return f"{obj.get('kind')} {namespace + '/' if namespace else ''}{meta.get('name')}"


def _selector_matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
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


def _quantity(value: object) -> Decimal | None:
    try:
        return Decimal(parse_quantity(value))
    except (ValueError, TypeError, ArithmeticError):
        return None


# --- names and labels -----------------------------------------------------------------------


def check_names(m: Manifests) -> list[str]:
    """Object, container, volume and port names are what the API server accepts."""
    problems: list[str] = []
    for obj in m.objects:
        kind, name = obj.get("kind", ""), str(obj.get("metadata", {}).get("name", ""))
        if kind in DNS_1035_KINDS:
            valid = len(name) <= 63 and bool(_DNS_1035_LABEL.fullmatch(name))
            rule = "a DNS-1035 label"
        elif kind in DNS_LABEL_KINDS:
            valid, rule = is_dns_label(name), "a DNS-1123 label"
        else:
            valid, rule = is_dns_subdomain(name), "a DNS-1123 subdomain"
        if not valid:
            problems.append(f"{_name(obj)}: the name is not {rule}")
        namespace = obj.get("metadata", {}).get("namespace")
        if kind in CLUSTER_SCOPED and namespace:
            problems.append(f"{_name(obj)}: a cluster-scoped object has a namespace")
        if kind not in CLUSTER_SCOPED and not namespace:
            problems.append(f"{_name(obj)}: no namespace (every object names its own)")
        for port in obj.get("spec", {}).get("ports", []) if kind == "Service" else []:
            if "name" in port and not is_port_name(port["name"]):
                problems.append(f"{_name(obj)}: port name {port['name']!r} is invalid")
    for template in m.pod_templates():
        for container in template.containers():
            if not is_dns_label(container.get("name", "")):
                problems.append(f"{template.where}: container name {container.get('name')!r}")
            for port in container.get("ports", []):
                if "name" in port and not is_port_name(port["name"]):
                    problems.append(f"{template.where}: port name {port['name']!r} is invalid")
        for volume in template.spec.get("volumes", []):
            if not is_dns_label(volume.get("name", "")):
                problems.append(f"{template.where}: volume name {volume.get('name')!r}")
    return problems


def _label_maps(obj: Obj, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every map of labels in an object: labels, matchLabels, a Service's selector."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            here = f"{path}.{key}" if path else key
            if key in ("labels", "matchLabels", "nodeSelector") and isinstance(value, dict):
                yield here, value
            elif (
                key == "selector"
                and isinstance(value, dict)
                and path == "spec"
                and ("matchLabels" not in value and "matchExpressions" not in value)
            ):
                yield here, value  # a Service's plain map selector
            else:
                yield from _label_maps(value, here)
    elif isinstance(obj, list):
        for index, item in enumerate(obj):
            yield from _label_maps(item, f"{path}[{index}]")


def check_labels(m: Manifests) -> list[str]:
    """Label keys and values (and annotation keys) are valid."""
    problems: list[str] = []
    for obj in m.objects:
        for path, labels in _label_maps(obj):
            for key, value in labels.items():
                if not is_label_key(str(key)):
                    problems.append(f"{_name(obj)}: {path}: invalid label key {key!r}")
                if not is_label_value(value):
                    problems.append(f"{_name(obj)}: {path}: invalid label value {value!r}")
        for key in obj.get("metadata", {}).get("annotations") or {}:
            if not is_label_key(str(key)):
                problems.append(f"{_name(obj)}: invalid annotation key {key!r}")
    return problems


# --- pods -----------------------------------------------------------------------------------------


def check_resources(m: Manifests) -> list[str]:
    """Every container asks for CPU and memory and is limited, requests at most the limits,
    in quantities Kubernetes parses; emptyDir size limits parse too."""
    problems: list[str] = []
    for template in m.pod_templates():
        for container in template.containers():
            where = f"{template.where}, container {container.get('name')}"
            resources = container.get("resources") or {}
            requests = resources.get("requests") or {}
            limits = resources.get("limits") or {}
            for resource in ("cpu", "memory"):
                if resource not in requests or resource not in limits:
                    problems.append(f"{where}: {resource} needs a request and a limit")
            for kind, amounts in (("request", requests), ("limit", limits)):
                for resource, value in amounts.items():
                    parsed = _quantity(value)
                    if parsed is None or parsed <= 0:
                        problems.append(f"{where}: {resource} {kind} {value!r} is not a quantity")
            for resource in set(requests) & set(limits):
                low, high = _quantity(requests[resource]), _quantity(limits[resource])
                if low is not None and high is not None and low > high:
                    problems.append(
                        f"{where}: {resource} request {requests[resource]} is above the "
                        f"limit {limits[resource]}"
                    )
        for volume in template.spec.get("volumes", []):
            size = (volume.get("emptyDir") or {}).get("sizeLimit")
            if size is not None and (_quantity(size) or 0) <= 0:
                problems.append(f"{template.where}: volume {volume['name']} sizeLimit {size!r}")
    return problems


def check_security_context(m: Manifests) -> list[str]:
    """Every container meets the "restricted" Pod Security Standard (and a read-only root)."""
    problems: list[str] = []
    for template in m.pod_templates():
        pod = template.spec.get("securityContext") or {}
        for flag in ("hostNetwork", "hostPID", "hostIPC"):
            if template.spec.get(flag):
                problems.append(f"{template.where}: {flag}")
        for volume in template.spec.get("volumes", []):
            if "hostPath" in volume:
                problems.append(f"{template.where}: hostPath volume {volume['name']}")
        for container in template.containers():
            where = f"{template.where}, container {container.get('name')}"
            own = container.get("securityContext") or {}

            def setting(key: str, own: Obj = own, pod: Obj = pod) -> Any:
                # A container's own setting wins over the pod's.
                return own[key] if key in own else pod.get(key)

            if setting("runAsNonRoot") is not True:
                problems.append(f"{where}: runAsNonRoot is not true")
            if setting("runAsUser") == 0:
                problems.append(f"{where}: runs as uid 0")
            if own.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{where}: allowPrivilegeEscalation is not false")
            if own.get("privileged"):
                problems.append(f"{where}: privileged")
            capabilities = own.get("capabilities") or {}
            if "ALL" not in (capabilities.get("drop") or []):
                problems.append(f"{where}: capabilities do not drop ALL")
            if capabilities.get("add"):
                problems.append(f"{where}: adds capabilities {capabilities['add']}")
            seccomp = (setting("seccompProfile") or {}).get("type")
            if seccomp not in RESTRICTED_SECCOMP:
                problems.append(f"{where}: seccompProfile is {seccomp!r}, not RuntimeDefault")
            if own.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: the root file system is writable")
    return problems


def _replicas(obj: Obj) -> int:
    return int(obj.get("spec", {}).get("replicas", 1))


def _probe_path(probe: Obj | None) -> str:
    return str(((probe or {}).get("httpGet") or {}).get("path", ""))


def check_web(m: Manifests) -> list[str]:
    """The web runs two or more replicas with /healthz (liveness) and /readyz (readiness)."""
    problems: list[str] = []
    webs = [obj for obj in m.workloads("web") if obj["kind"] == "Deployment"]
    if not webs:
        return ["no web Deployment (app.kubernetes.io/component: web)"]
    for web in webs:
        if _replicas(web) < 2:
            problems.append(f"{_name(web)}: {_replicas(web)} replica(s), at least 2 needed")
        template = web["spec"]["template"]["spec"]
        for container in template.get("containers", []):
            where = f"{_name(web)}, container {container['name']}"
            if _probe_path(container.get("livenessProbe")) != "/healthz":
                problems.append(f"{where}: no liveness probe on /healthz")
            if _probe_path(container.get("readinessProbe")) != "/readyz":
                problems.append(f"{where}: no readiness probe on /readyz")
            ports = {port.get("name") for port in container.get("ports", [])} | {
                port.get("containerPort") for port in container.get("ports", [])
            }
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                port = ((container.get(kind) or {}).get("httpGet") or {}).get("port")
                if port is not None and port not in ports:
                    problems.append(f"{where}: {kind} port {port!r} is not a container port")
    return problems


def _command(container: Obj) -> list[str]:
    return [str(part) for part in (container.get("command") or []) + (container.get("args") or [])]


def check_single_beat(m: Manifests) -> list[str]:
    """Exactly one Celery beat: one Deployment, one replica, Recreate; no one else runs beat."""
    problems: list[str] = []
    beats = m.workloads("beat")
    if len(beats) != 1:
        problems.append(f"{len(beats)} beat workloads, exactly 1 needed")
    for beat in beats:
        if beat["kind"] != "Deployment":
            problems.append(f"{_name(beat)}: beat must be a Deployment")
        if _replicas(beat) != 1:
            problems.append(f"{_name(beat)}: {_replicas(beat)} replicas, exactly 1 needed")
        strategy = beat.get("spec", {}).get("strategy", {}).get("type")
        if strategy != "Recreate":
            problems.append(f"{_name(beat)}: strategy {strategy!r}; Recreate keeps two apart")
    for template in m.pod_templates():
        if template.labels.get(COMPONENT) == "beat":
            continue
        for container in template.containers():
            command = _command(container)
            if "celery" in " ".join(command) and (
                "beat" in command or "-B" in command or "--beat" in command
            ):
                problems.append(f"{template.where}: runs a Celery beat besides the beat")
    return problems


def _celery_queues(command: list[str]) -> set[str] | None:
    """The queues a ``celery worker`` command names (-Q/--queues), None when it names none."""
    found: set[str] | None = None
    for index, part in enumerate(command):
        value = None
        if part in ("-Q", "--queues") and index + 1 < len(command):
            value = command[index + 1]
        elif part.startswith("--queues="):
            value = part.removeprefix("--queues=")
        elif part.startswith("-Q") and len(part) > 2:
            value = part[2:]
        if value is not None:
            found = (found or set()) | {name for name in value.split(",") if name}
    return found


def check_worker_queues(m: Manifests, queues: set[str]) -> list[str]:
    """Every Celery queue of the settings has a worker, and every worker names its queues
    (one that names none consumes the default queue alone, and the rest waits forever)."""
    problems: list[str] = []
    consumed: set[str] = set()
    for template in m.pod_templates():
        if template.labels.get(COMPONENT) != "worker":
            continue
        for container in template.containers():
            command = _command(container)
            if "worker" not in command:
                continue
            named = _celery_queues(command)
            if named is None:
                problems.append(f"{template.where}: the worker names no queue (-Q)")
                continue
            for unknown in sorted(named - queues):
                problems.append(f"{template.where}: queue {unknown!r} is not in the settings")
            consumed |= named
    for queue in sorted(queues - consumed):
        problems.append(f"no worker consumes the queue {queue!r}")
    return problems


# --- access ---------------------------------------------------------------------------------------


def check_rbac(m: Manifests) -> list[str]:
    """API rights: Roles in the sessions namespace only, no wildcards, no Secrets, no
    subresources; accounts without rights mount no token."""
    problems: list[str] = []
    sessions = m.sessions_namespace()
    for kind in ("ClusterRole", "ClusterRoleBinding"):
        problems.extend(f"{_name(obj)}: no cluster-wide rights" for obj in m.of_kind(kind))
    bound: set[tuple[str, str]] = set()
    for binding in m.of_kind("RoleBinding"):
        namespace = binding["metadata"].get("namespace", "")
        ref = binding.get("roleRef", {})
        if namespace != sessions:
            problems.append(f"{_name(binding)}: outside the sessions namespace {sessions}")
        if ref.get("kind") != "Role":
            problems.append(f"{_name(binding)}: binds a {ref.get('kind')}, not a Role")
        role = m.find("Role", namespace, ref.get("name", ""))
        if role is None:
            problems.append(f"{_name(binding)}: Role {ref.get('name')} does not exist")
        for subject in binding.get("subjects", []):
            if subject.get("kind") != "ServiceAccount":
                problems.append(f"{_name(binding)}: subject {subject} is not a ServiceAccount")
                continue
            key = (subject.get("namespace", namespace), subject.get("name", ""))
            if m.find("ServiceAccount", *key) is None:
                problems.append(f"{_name(binding)}: ServiceAccount {key[0]}/{key[1]} missing")
            bound.add(key)
    for role in m.of_kind("Role"):
        if role["metadata"].get("namespace") != sessions:
            problems.append(f"{_name(role)}: outside the sessions namespace {sessions}")
        for rule in role.get("rules", []):
            for field_name in ("apiGroups", "resources", "verbs"):
                if "*" in rule.get(field_name, []):
                    problems.append(f"{_name(role)}: '*' in {field_name}")
            for resource in rule.get("resources", []):
                if resource == "secrets":
                    problems.append(f"{_name(role)}: grants access to Secrets")
                if "/" in resource:
                    problems.append(f"{_name(role)}: grants the subresource {resource}")
            for verb in set(rule.get("verbs", [])) & ESCALATING_VERBS - {"*"}:
                problems.append(f"{_name(role)}: grants {verb}")
    for template in m.pod_templates():
        account = template.spec.get("serviceAccountName", "")
        if not account or account == "default":
            problems.append(f"{template.where}: uses the default ServiceAccount")
            continue
        service_account = m.find("ServiceAccount", template.namespace, account)
        if service_account is None:
            problems.append(f"{template.where}: ServiceAccount {account} does not exist")
            continue
        if (template.namespace, account) not in bound:
            if template.spec.get("automountServiceAccountToken") is not False:
                problems.append(f"{template.where}: mounts an API token it has no use for")
            if service_account.get("automountServiceAccountToken") is not False:
                problems.append(f"{_name(service_account)}: automountServiceAccountToken not false")
    return problems


# --- references -----------------------------------------------------------------------------------


def _data_keys(obj: Obj) -> set[str]:
    return {
        *(obj.get("data") or {}),
        *(obj.get("stringData") or {}),
        *(obj.get("binaryData") or {}),
    }


def check_references(m: Manifests) -> list[str]:
    """ConfigMaps, Secrets (and their keys), claims and accounts that pods use exist, in the
    pods' namespace."""
    problems: list[str] = []

    def lookup(kind: str, namespace: str, name: str) -> Obj | None:
        if kind == "Secret":
            return m.secret(namespace, name)
        return m.find(kind, namespace, name)

    def need(where: str, kind: str, namespace: str, name: str, keys: list[str]) -> None:
        found = lookup(kind, namespace, name)
        if found is None:
            problems.append(f"{where}: {kind} {namespace}/{name} does not exist")
            return
        for key in keys:
            if key not in _data_keys(found):
                problems.append(f"{where}: {kind} {namespace}/{name} has no key {key!r}")

    for template in m.pod_templates():
        where, namespace = template.where, template.namespace
        for container in template.containers():
            for source in container.get("envFrom", []):
                for kind, ref_key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                    if ref_key in source and not source[ref_key].get("optional"):
                        need(where, kind, namespace, source[ref_key]["name"], [])
            for env in container.get("env", []):
                value_from = env.get("valueFrom") or {}
                for kind, ref_key in (("ConfigMap", "configMapKeyRef"), ("Secret", "secretKeyRef")):
                    ref = value_from.get(ref_key)
                    if ref and not ref.get("optional"):
                        need(where, kind, namespace, ref["name"], [ref["key"]])
        for volume in template.spec.get("volumes", []):
            sources = [volume, *volume.get("projected", {}).get("sources", [])]
            for source in sources:
                for kind, ref_key, name_key in (
                    ("ConfigMap", "configMap", "name"),
                    ("Secret", "secret", "secretName"),
                ):
                    ref = source.get(ref_key)
                    if ref is None or ref.get("optional"):
                        continue
                    ref_name = ref.get(name_key) or ref.get("name", "")
                    keys = [item["key"] for item in ref.get("items", [])]
                    need(where, kind, namespace, ref_name, keys)
            claim = volume.get("persistentVolumeClaim")
            if claim is not None:
                need(where, "PersistentVolumeClaim", namespace, claim["claimName"], [])
    return problems


def check_file_variables(m: Manifests) -> list[str]:
    """Every NAME_FILE variable names a file that a mounted volume really provides."""
    problems: list[str] = []
    for template in m.pod_templates():
        volumes = {volume["name"]: volume for volume in template.spec.get("volumes", [])}
        for container in template.containers():
            where = f"{template.where}, container {container['name']}"
            for env in container.get("env", []):
                if not env["name"].endswith("_FILE"):
                    continue
                path = PurePosixPath(str(env.get("value", "")))
                mount = next(
                    (
                        mount
                        for mount in container.get("volumeMounts", [])
                        if path.is_relative_to(mount["mountPath"])
                        and path != PurePosixPath(mount["mountPath"])
                    ),
                    None,
                )
                if mount is None:
                    problems.append(f"{where}: {env['name']}={path} is in no mounted volume")
                    continue
                relative = str(path.relative_to(mount["mountPath"]))
                volume = volumes.get(mount["name"], {})
                provided = _volume_files(m, template.namespace, volume)
                if provided is not None and relative not in provided:
                    problems.append(
                        f"{where}: {env['name']}={path}: volume {mount['name']} has no file "
                        f"{relative!r} (it has {sorted(provided)})"
                    )
    return problems


def _volume_files(m: Manifests, namespace: str, volume: Obj) -> set[str] | None:
    """The files a Secret or ConfigMap volume provides; None for other kinds of volume."""
    if "secret" in volume:
        ref, source = volume["secret"], m.secret(namespace, volume["secret"].get("secretName", ""))
    elif "configMap" in volume:
        ref, source = (
            volume["configMap"],
            m.find("ConfigMap", namespace, volume["configMap"]["name"]),
        )
    else:
        return None
    if ref.get("items"):
        return {item["path"] for item in ref["items"]}
    return _data_keys(source) if source else set()


def check_selectors(m: Manifests) -> list[str]:
    """Services, PodDisruptionBudgets and NetworkPolicies select pods that exist, workloads
    select their own pods, and a Service's named target port is a port of those pods."""
    problems: list[str] = []
    templates = m.pod_templates()

    def selected(namespace: str, selector: Obj) -> list[PodTemplate]:
        return [
            template
            for template in templates
            if template.namespace == namespace and _selector_matches(selector, template.labels)
        ]

    for service in m.of_kind("Service"):
        selector = service.get("spec", {}).get("selector") or {}
        pods = selected(service["metadata"]["namespace"], {"matchLabels": selector})
        if not selector or not pods:
            problems.append(f"{_name(service)}: its selector {selector} matches no pod template")
            continue
        for port in service["spec"].get("ports", []):
            target = port.get("targetPort", port.get("port"))
            offered = {
                value
                for pod in pods
                for container in pod.containers()
                for declared in container.get("ports", [])
                for value in (declared.get("name"), declared.get("containerPort"))
            }
            if target not in offered:
                problems.append(f"{_name(service)}: targetPort {target!r} is not a pod port")
    for pdb in m.of_kind("PodDisruptionBudget"):
        selector = pdb.get("spec", {}).get("selector") or {}
        if not selector or not selected(pdb["metadata"]["namespace"], selector):
            problems.append(f"{_name(pdb)}: its selector matches no pod template")
    for policy in m.of_kind("NetworkPolicy"):
        selector = policy.get("spec", {}).get("podSelector") or {}
        if not selector:
            continue  # {}: every pod of the namespace, those the spawner makes included
        if not selected(policy["metadata"]["namespace"], selector):
            problems.append(f"{_name(policy)}: its podSelector matches no pod template")
    for workload in m.objects:
        selector = workload.get("spec", {}).get("selector")
        if workload.get("kind") not in {"Deployment", "StatefulSet", "ReplicaSet"}:
            continue
        labels = workload["spec"]["template"].get("metadata", {}).get("labels", {})
        if not selector or not _selector_matches(selector, labels):
            problems.append(f"{_name(workload)}: its selector does not match its pod template")
    return problems


def check_disruption_budgets(m: Manifests) -> list[str]:
    """A budget always leaves a drain room: its workload runs more replicas than it keeps."""
    problems: list[str] = []
    for pdb in m.of_kind("PodDisruptionBudget"):
        spec = pdb.get("spec", {})
        selector = spec.get("selector") or {}
        for workload in m.of_kind("Deployment"):
            labels = workload["spec"]["template"].get("metadata", {}).get("labels", {})
            if workload["metadata"].get("namespace") != pdb["metadata"].get("namespace"):
                continue
            if not selector or not _selector_matches(selector, labels):
                continue
            keep = spec.get("minAvailable")
            if isinstance(keep, int) and keep >= _replicas(workload):
                problems.append(
                    f"{_name(pdb)}: keeps {keep} of {_replicas(workload)} {_name(workload)} "
                    "pods: a drain could never evict one"
                )
            if spec.get("maxUnavailable") in (0, "0%"):
                problems.append(f"{_name(pdb)}: maxUnavailable 0 blocks every drain")
    return problems


def check_namespaces(m: Manifests) -> list[str]:
    """Objects live in namespaces the rendering creates, under the restricted profile."""
    problems: list[str] = []
    namespaces = {obj["metadata"]["name"]: obj for obj in m.of_kind("Namespace")}
    for name in (PORTAL_NAMESPACE, m.sessions_namespace()):
        labels = namespaces.get(name, {}).get("metadata", {}).get("labels", {})
        if name not in namespaces:
            problems.append(f"namespace {name} is not created")
        elif labels.get("pod-security.kubernetes.io/enforce") != "restricted":
            problems.append(f"namespace {name}: Pod Security 'restricted' is not enforced")
    for obj in m.objects:
        namespace = obj.get("metadata", {}).get("namespace")
        if namespace and namespace not in namespaces:
            problems.append(f"{_name(obj)}: namespace {namespace} is not created")
    return problems


# --- storage --------------------------------------------------------------------------------------


def _volume_source(pv: Obj) -> Obj:
    """What a volume mounts (the share), without what only says how it is claimed."""
    ignored = {"capacity", "accessModes", "claimRef", "persistentVolumeReclaimPolicy"}
    ignored |= {"storageClassName", "mountOptions", "volumeMode", "nodeAffinity"}
    source = {key: value for key, value in pv.get("spec", {}).items() if key not in ignored}
    if "csi" in source:
        # A CSI driver needs a distinct handle per volume, even for the same share.
        source["csi"] = {k: v for k, v in source["csi"].items() if k != "volumeHandle"}
    return source


def check_scratch(m: Manifests) -> list[str]:
    """The shared scratch: a ReadWriteMany claim named KUBE_SCRATCH_CLAIM in the sessions
    namespace and one in the portal namespace, each pre-bound to a volume on the same share; every
    worker mounts the portal's at STORAGE_SCRATCH_ROOT."""
    problems: list[str] = []
    config = m.config()
    claim_name = config.get("KUBE_SCRATCH_CLAIM", "scratch")
    sources = []
    for namespace in (m.sessions_namespace(), PORTAL_NAMESPACE):
        claim = m.find("PersistentVolumeClaim", namespace, claim_name)
        if claim is None:
            problems.append(f"no claim {namespace}/{claim_name} on the shared scratch")
            continue
        spec = claim["spec"]
        if "ReadWriteMany" not in spec.get("accessModes", []):
            problems.append(f"{_name(claim)}: not ReadWriteMany")
        volume_name = spec.get("volumeName")
        pv = m.find("PersistentVolume", "", volume_name or "")
        if pv is None:
            problems.append(f"{_name(claim)}: volume {volume_name!r} is not in the rendering")
            continue
        ref = pv["spec"].get("claimRef", {})
        if (ref.get("namespace"), ref.get("name")) != (namespace, claim_name):
            problems.append(f"{_name(pv)}: claimRef {ref} is not {namespace}/{claim_name}")
        if pv["spec"].get("storageClassName", "") != spec.get("storageClassName", ""):
            problems.append(f"{_name(claim)}: storage class differs from {_name(pv)}'s")
        if not set(spec.get("accessModes", [])) <= set(pv["spec"].get("accessModes", [])):
            problems.append(f"{_name(claim)}: access modes {_name(pv)} does not offer")
        request = _quantity(spec.get("resources", {}).get("requests", {}).get("storage"))
        capacity = _quantity(pv["spec"].get("capacity", {}).get("storage"))
        if request is None or capacity is None or request > capacity:
            problems.append(f"{_name(claim)}: request above {_name(pv)}'s capacity")
        sources.append(_volume_source(pv))
    if len(sources) == 2 and sources[0] != sources[1]:
        problems.append(f"the two scratch volumes are different shares: {sources}")
    root = config.get("STORAGE_SCRATCH_ROOT", "")
    workers = [t for t in m.pod_templates() if t.labels.get(COMPONENT) == "worker"]
    if not workers:
        problems.append("no worker (app.kubernetes.io/component: worker)")
    # Every worker, whatever its queue: the tasks a queue runs are the settings' choice.
    for template in workers:
        claims = {
            volume["name"]
            for volume in template.spec.get("volumes", [])
            if volume.get("persistentVolumeClaim", {}).get("claimName") == claim_name
        }
        mounted = any(
            mount["name"] in claims and mount["mountPath"] == root and "subPath" not in mount
            for container in template.containers()
            for mount in container.get("volumeMounts", [])
        )
        if not mounted:
            problems.append(
                f"{template.where}: the worker does not mount the scratch claim at {root!r}"
            )
    return problems


# --- settings -------------------------------------------------------------------------------------


def _hosts_of(url: str) -> str:
    return urlsplit(url).hostname or ""


def check_settings_agree(m: Manifests) -> list[str]:
    """The settings agree with the objects: the public host, the forward-auth URL, the sessions
    namespace, the ingress controller, the probes' Host header."""
    problems: list[str] = []
    config = m.config()
    if not config:
        return ["no portal-config ConfigMap read by the web"]
    allowed = {host.strip() for host in config.get("ALLOWED_HOSTS", "").split(",")}
    origins = {origin.strip() for origin in config.get("CSRF_TRUSTED_ORIGINS", "").split(",")}
    public = config.get("KUBE_PUBLIC_URL", "")
    ingresses = [
        obj for obj in m.of_kind("Ingress") if obj["metadata"]["namespace"] == PORTAL_NAMESPACE
    ]
    if not ingresses:
        problems.append("no Ingress for the portal")
    for ingress in ingresses:
        spec = ingress["spec"]
        tls_hosts = {host for tls in spec.get("tls", []) for host in tls.get("hosts", [])}
        for rule in spec.get("rules", []):
            host = rule.get("host", "")
            if host not in allowed:
                problems.append(f"{_name(ingress)}: host {host} is not in ALLOWED_HOSTS")
            if f"https://{host}" not in origins:
                problems.append(f"{_name(ingress)}: https://{host} not in CSRF_TRUSTED_ORIGINS")
            if public.rstrip("/") != f"https://{host}":
                problems.append(
                    f"{_name(ingress)}: KUBE_PUBLIC_URL {public!r} is not https://{host}"
                )
            if host not in tls_hosts:
                problems.append(f"{_name(ingress)}: host {host} has no TLS certificate")
        if spec.get("ingressClassName") != config.get("KUBE_INGRESS_CLASS", "nginx"):
            problems.append(f"{_name(ingress)}: class differs from KUBE_INGRESS_CLASS")
    auth_url = urlsplit(config.get("KUBE_AUTH_URL", ""))
    auth_host = auth_url.hostname or ""
    if auth_host not in allowed:
        problems.append(f"KUBE_AUTH_URL's host {auth_host!r} is not in ALLOWED_HOSTS")
    parts = auth_host.split(".")
    service = (
        m.find("Service", parts[1], parts[0]) if len(parts) >= 3 and parts[2] == "svc" else None
    )
    if service is None:
        problems.append(f"KUBE_AUTH_URL's host {auth_host!r} names no Service of the rendering")
    else:
        port = auth_url.port or (443 if auth_url.scheme == "https" else 80)
        if port not in {p.get("port") for p in service["spec"].get("ports", [])}:
            problems.append(f"KUBE_AUTH_URL's port {port} is not a port of {_name(service)}")
    for template in m.pod_templates():
        for container in template.containers():
            for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
                headers = ((container.get(kind) or {}).get("httpGet") or {}).get("httpHeaders", [])
                for header in headers:
                    if header["name"].lower() == "host" and header["value"] not in allowed:
                        problems.append(
                            f"{template.where}: {kind} Host {header['value']} not allowed"
                        )
    sessions = m.sessions_namespace()
    roles = {role["metadata"]["namespace"] for role in m.of_kind("Role")}
    if roles != {sessions}:
        problems.append(f"KUBE_NAMESPACE {sessions} is not where the spawner's Role is ({roles})")
    router_namespace = config.get("KUBE_ROUTER_NAMESPACE", "ingress-nginx")
    router_labels = dict(
        item.split("=", 1) for item in config.get("KUBE_ROUTER_POD_LABELS", "").split(",") if item
    )
    router = {"kubernetes.io/metadata.name": router_namespace}
    web_policies = [
        policy
        for policy in m.of_kind("NetworkPolicy")
        if (policy["spec"].get("podSelector") or {}).get("matchLabels", {}).get(COMPONENT) == "web"
    ]
    peers = [
        peer
        for policy in web_policies
        for rule in policy["spec"].get("ingress", [])
        for peer in rule.get("from", [])
    ]
    if not any(
        (peer.get("namespaceSelector") or {}).get("matchLabels") == router
        and (peer.get("podSelector") or {}).get("matchLabels") == router_labels
        for peer in peers
    ):
        problems.append(
            "the web's NetworkPolicy does not admit the ingress controller of "
            f"KUBE_ROUTER_NAMESPACE/KUBE_ROUTER_POD_LABELS ({router_namespace}, {router_labels})"
        )
    return problems


def settings_variables(settings_path: Path) -> set[str]:
    """The environment variables ``portal/settings.py`` reads: the first argument of every call
    to a reader imported from ``portal.env``; ``env_secret("X")`` also reads ``X_FILE``."""
    tree = ast.parse(settings_path.read_text())
    readers = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module == "portal.env"
        for alias in node.names
    }
    names = set()
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
            continue
        if node.func.id not in readers or not node.args:
            continue
        first = node.args[0]
        if isinstance(first, ast.Constant) and isinstance(first.value, str):
            names.add(first.value)
            if node.func.id == "env_secret":
                names.add(f"{first.value}_FILE")
    return names


def env_variables_set(m: Manifests) -> dict[str, set[str]]:
    """Every environment variable the manifests give a container, and where."""
    found: dict[str, set[str]] = {}
    for template in m.pod_templates():
        for container in template.containers():
            where = f"{template.where}, container {container['name']}"
            for env in container.get("env", []):
                found.setdefault(env["name"], set()).add(where)
            for source in container.get("envFrom", []):
                ref = source.get("configMapRef") or source.get("secretRef") or {}
                kind = "ConfigMap" if "configMapRef" in source else "Secret"
                obj = m.find(kind, template.namespace, ref.get("name", ""))
                for key in _data_keys(obj or {}):
                    found.setdefault(source.get("prefix", "") + key, set()).add(where)
    return found


def check_env_names_known(m: Manifests, known: set[str]) -> list[str]:
    """Every variable the manifests set is one the settings read: no typo, no drift."""
    return [
        f"{name} (set in {', '.join(sorted(where))}) is not read by portal/settings.py"
        for name, where in sorted(env_variables_set(m).items())
        if name not in known
    ]


def check_images_pinned(m: Manifests) -> list[str]:
    """An overlay's images come from a registry, by a tag other than latest or by digest."""
    problems: list[str] = []
    for template in m.pod_templates():
        for container in template.containers():
            image = str(container.get("image", ""))
            name, tag, digest = split_image(image)
            if "/" not in name:
                problems.append(f"{template.where}: image {image!r} names no registry")
            if not digest and tag in ("", "latest"):
                problems.append(f"{template.where}: image {image!r} is not pinned")
    return problems


#: The checks that apply to the base and to every overlay.
def _refuses_everyone(ranges: object) -> bool:
    """Whether a whitelist-source-range admits loopback at most: no client of the ingress."""
    if not isinstance(ranges, str) or not ranges.strip():
        return False
    try:
        networks = [ipaddress.ip_network(part.strip()) for part in ranges.split(",")]
    except ValueError:
        return False
    return all(network.is_loopback for network in networks)


def check_forward_auth_not_public(m: Manifests) -> list[str]:
    """No public host routes the portal's forward-auth endpoints (``/auth/``): an allowed
    answer carries a session server's credential, for the ingress controller alone (its
    subrequests go to the web Service directly, not through an Ingress)."""
    problems = []
    guarded: set[str] = set()
    routed: dict[str, str] = {}
    for ingress in m.of_kind("Ingress"):
        annotations = ingress["metadata"].get("annotations") or {}
        refuses = _refuses_everyone(
            annotations.get("nginx.ingress.kubernetes.io/whitelist-source-range")
        )
        for rule in ingress["spec"].get("rules", []):
            host = rule.get("host", "")
            for path in (rule.get("http") or {}).get("paths", []):
                prefix = str(path.get("path", ""))
                if prefix == "/auth/" and path.get("pathType") == "Prefix" and refuses:
                    guarded.add(host)
                elif "/auth/".startswith(prefix) or prefix.startswith("/auth/"):
                    routed[host] = _name(ingress)
    for host, name in routed.items():
        if host not in guarded:
            problems.append(
                f"{name}: routes /auth/ on {host or 'every host'} to the portal; add an Ingress "
                "for the /auth/ prefix that refuses every client (whitelist-source-range)"
            )
    return problems


CHECKS: dict[str, Check] = {
    "names": check_names,
    "labels": check_labels,
    "resources": check_resources,
    "security_context": check_security_context,
    "web": check_web,
    "single_beat": check_single_beat,
    "rbac": check_rbac,
    "references": check_references,
    "file_variables": check_file_variables,
    "selectors": check_selectors,
    "disruption_budgets": check_disruption_budgets,
    "namespaces": check_namespaces,
    "scratch": check_scratch,
    "settings_agree": check_settings_agree,
    "forward_auth_not_public": check_forward_auth_not_public,
}

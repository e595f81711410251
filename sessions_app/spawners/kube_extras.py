"""An environment's Kubernetes extras: what operators add to its pods, and whether it is right.

kubespawner's most used knobs, per environment (``Environment.kube_*``, set in the admin):
tolerations and a node selector (a GPU node pool), extended resources (its GPUs: the device
plugin hands a container only the devices its limits ask for), image pull secrets (a private
registry), extra volumes and their mounts (read-only data shares) and extra environment
variables. They
reach :func:`~.kube_objects.make_pod` as ``SpawnRequest.backend_settings["kube"]``, and
:func:`apply_extras` adds them to the pod the builder made.

:func:`extras_problems` is what the admin (``Environment.clean``) asks: it builds the pod the
spawner would send with these extras and checks it with the same schemas the builders' tests
use (kubernetes-validate, strict: an unknown or misspelled field is an error), for the oldest
and newest Kubernetes versions the portal supports, then what the schemas cannot say: the pod
must still pass the namespace's restricted Pod Security Standard (volume types), every mount
is read-only and belongs to an extra volume, nothing hides the home, scratch or library, no
variable replaces one the portal sets, and extended resources are whole counts of resources
that are really extended (the schemas take ``cpu`` or ``-1`` as readily as ``nvidia.com/gpu``).
Each problem is filed under the field it is about.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from kubernetes.client import (
    ApiClient,
    V1EnvVar,
    V1LocalObjectReference,
    V1Pod,
    V1Toleration,
    V1Volume,
    V1VolumeMount,
)

from sessions_app.spawners.names import is_dns_label, is_dns_subdomain, is_label_value

#: The extras, by the key ``backend_settings["kube"]`` holds them under (and the admin field).
FIELDS = {
    "node_selector": "kube_node_selector",
    "tolerations": "kube_tolerations",
    "extended_resources": "kube_extended_resources",
    "image_pull_secrets": "kube_image_pull_secrets",
    "volumes": "kube_volumes",
    "volume_mounts": "kube_volume_mounts",
    "env": "kube_env",
}
#: The schemas the extras are checked against: the oldest and newest Kubernetes the portal
#: supports (tests/deploy/versions.py has the whole range, which the builders' tests use).
SCHEMA_VERSIONS = ("1.30", "1.37")
#: Volume types the restricted Pod Security Standard allows (the sessions' namespace enforces
#: it: deploy/base/namespaces.yaml). A data share on NFS or a host path goes through a PVC.
ALLOWED_VOLUME_TYPES = frozenset(
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
_LABEL_KEY = re.compile(
    r"([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?"
)
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")
#: The most of one extended resource a session may ask for (a typo such as 10 for 1 is refused
#: before it leaves a session pending for ever; no node has more GPUs than this).
MAX_EXTENDED_RESOURCE = 16
# An extended resource's name without its domain: a qualified name's name part.
_RESOURCE_NAME = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")
# The schema path's second part, for filing a schema error under its field.
_SPEC_FIELDS = {
    "nodeSelector": "node_selector",
    "tolerations": "tolerations",
    "imagePullSecrets": "image_pull_secrets",
    "volumes": "volumes",
}


def extras_of(backend_settings: Mapping[str, Any]) -> dict[str, Any]:
    """The extras in a request's back-end settings (none: empty)."""
    extras = backend_settings.get("kube")
    return dict(extras) if isinstance(extras, Mapping) else {}


def apply_extras(pod: V1Pod, extras: Mapping[str, Any]) -> V1Pod:
    """Add ``extras`` (checked by :func:`extras_problems`) to the pod of a session.

    Tolerations, volumes and mounts are read from the API's JSON by the client's own models,
    which refuse unknown fields and wrong types (``pydantic.ValidationError``).
    """
    spec = pod.spec
    assert spec is not None  # the builder's pod has one
    server = spec.containers[0]
    if extras.get("node_selector"):
        spec.node_selector = dict(extras["node_selector"])
    if extras.get("tolerations"):
        spec.tolerations = [V1Toleration.model_validate(item) for item in extras["tolerations"]]
    if extras.get("extended_resources"):
        # Requests equal to the limits, as Kubernetes requires of extended resources; the
        # portal's own amounts win (extras_problems refuses cpu, memory and the like anyway).
        amounts = {name: str(count) for name, count in extras["extended_resources"].items()}
        resources = server.resources
        assert resources is not None  # the builder sets the server's CPU and memory
        resources.limits = {**amounts, **(resources.limits or {})}
        resources.requests = {**amounts, **(resources.requests or {})}
    if extras.get("image_pull_secrets"):
        spec.image_pull_secrets = [
            V1LocalObjectReference(name=name) for name in extras["image_pull_secrets"]
        ]
    if extras.get("volumes"):
        spec.volumes = [
            *(spec.volumes or []),
            *(V1Volume.model_validate(item) for item in extras["volumes"]),
        ]
    if extras.get("volume_mounts"):
        server.volume_mounts = [
            *(server.volume_mounts or []),
            *(V1VolumeMount.model_validate(item) for item in extras["volume_mounts"]),
        ]
    if extras.get("env"):
        server.env = [
            *(server.env or []),
            *(V1EnvVar(name=name, value=value) for name, value in extras["env"].items()),
        ]
    return pod


def extras_problems(extras: Mapping[str, Any]) -> dict[str, list[str]]:
    """What is wrong with ``extras``, by key of :data:`FIELDS`; empty when they are right."""
    problems: dict[str, list[str]] = {}

    def add(key: str, message: str) -> None:
        problems.setdefault(key, []).append(message)

    for key, message in _shape_problems(extras):
        add(key, message)
    if problems:
        return problems  # the pod cannot be built from them
    for key, message in _schema_problems(extras):
        add(key, message)
    for key, message in _rule_problems(extras):
        add(key, message)
    return problems


def _shape_problems(extras: Mapping[str, Any]) -> list[tuple[str, str]]:
    found = []
    for key in ("node_selector", "env"):
        value = extras.get(key) or {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            found.append((key, 'Give a JSON object of strings, e.g. {"name": "value"}.'))
    counts = extras.get("extended_resources") or {}
    if not isinstance(counts, dict) or not all(
        isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool)
        for k, v in counts.items()
    ):
        found.append(
            (
                "extended_resources",
                'Give a JSON object of whole counts, e.g. {"nvidia.com/gpu": 1}.',
            )
        )
    for key in ("tolerations", "volumes", "volume_mounts"):
        value = extras.get(key) or []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            found.append((key, "Give a JSON list of objects, as in a pod's spec."))
    secrets = extras.get("image_pull_secrets") or []
    if not isinstance(secrets, list) or not all(isinstance(item, str) for item in secrets):
        found.append(("image_pull_secrets", 'Give a JSON list of Secret names, e.g. ["ghcr"].'))
    return found


def sample_pod(extras: Mapping[str, Any]) -> dict[str, Any]:
    """The pod the spawner would send for a session of an environment with ``extras``."""
    # Imported here: kube_objects imports this module.
    from sessions_app.spawners.base import SpawnRequest
    from sessions_app.spawners.kube_objects import KubeConfig, make_pod

    request = SpawnRequest(
        session_id="00000000-0000-4000-8000-000000000000",
        username="someone",
        memory_mb=1024,
        cpus=1,
        duration_seconds=3600,
        home_dir=Path("/home/u~1"),
        scratch_dir=Path("/scratch/u~1"),
        backend_settings={"image": "registry.example.org/session:1", "kube": dict(extras)},
    )
    config = KubeConfig(library_url="https://git.example.org/notebooks.git")
    return dict(ApiClient().sanitize_for_serialization(make_pod(config, request, "token")))


def _schema_problems(extras: Mapping[str, Any]) -> list[tuple[str, str]]:
    import kubernetes_validate
    import pydantic

    # The client's models check each item first (unknown fields, types), saying which.
    models: dict[str, type[pydantic.BaseModel]] = {
        "tolerations": V1Toleration,
        "volumes": V1Volume,
        "volume_mounts": V1VolumeMount,
    }
    for key, model in models.items():
        for index, item in enumerate(extras.get(key) or []):
            try:
                model.model_validate(item)
            except pydantic.ValidationError as exc:
                error = exc.errors()[0]
                place = ".".join(str(part) for part in (index, *error["loc"]))
                return [(key, f"{place}: {error['msg']}")]
    pod = sample_pod(extras)
    for version in SCHEMA_VERSIONS:
        try:
            kubernetes_validate.validate(pod, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            return [(_field_of(list(exc.path)), f"{exc.message} (Kubernetes {version} schema)")]
    return []


def _field_of(path: list[Any]) -> str:
    """The extra a schema error is about, from where it is in the pod."""
    if len(path) >= 2 and path[0] == "spec" and path[1] in _SPEC_FIELDS:
        return _SPEC_FIELDS[path[1]]
    if "volumeMounts" in path:
        return "volume_mounts"
    if "resources" in path:
        return "extended_resources"
    return "env"


def _rule_problems(extras: Mapping[str, Any]) -> list[tuple[str, str]]:
    from sessions_app.spawners.kube_objects import HOME, LIBRARY_DIR, SCRATCH_DIR

    found: list[tuple[str, str]] = []
    for key, value in (extras.get("node_selector") or {}).items():
        prefix, _, name = key.rpartition("/")
        if not _LABEL_KEY.fullmatch(key) or len(name) > 63 or len(prefix) > 253:
            found.append(("node_selector", f"{key!r} is not a label key."))
        if not is_label_value(value):
            found.append(("node_selector", f"{value!r} is not a label value."))
    for name, count in (extras.get("extended_resources") or {}).items():
        if not is_extended_resource(name):
            found.append(
                (
                    "extended_resources",
                    f"{name!r} is not an extended resource: give a device plugin's "
                    "<domain>/<name>, e.g. nvidia.com/gpu (not cpu, memory, hugepages-* or "
                    "a kubernetes.io name).",
                )
            )
        if not 1 <= count <= MAX_EXTENDED_RESOURCE:
            found.append(
                (
                    "extended_resources",
                    f"{name}: give a whole count from 1 to {MAX_EXTENDED_RESOURCE}, not {count}.",
                )
            )
    for name in extras.get("image_pull_secrets") or []:
        if not is_dns_subdomain(name):
            found.append(("image_pull_secrets", f"{name!r} is not a Secret name."))
    built_in = {"home", "scratch", "library"}
    volumes: set[str] = set()
    for volume in extras.get("volumes") or []:
        name = str(volume.get("name", ""))
        if not is_dns_label(name) or name in built_in or name in volumes:
            found.append(
                (
                    "volumes",
                    f"{name!r}: each volume needs a name of its own (a DNS label; not home, "
                    "scratch or library).",
                )
            )
        volumes.add(name)
        kinds = set(volume) - {"name"}
        if not kinds <= ALLOWED_VOLUME_TYPES:
            refused = ", ".join(sorted(kinds - ALLOWED_VOLUME_TYPES))
            found.append(
                (
                    "volumes",
                    f"{name}: {refused} is not allowed in the sessions' namespace (restricted "
                    "Pod Security Standard); mount a data share through a PersistentVolumeClaim.",
                )
            )
    protected = [PurePosixPath(path) for path in (HOME, SCRATCH_DIR, LIBRARY_DIR)]
    for mount in extras.get("volume_mounts") or []:
        name, path = str(mount.get("name", "")), str(mount.get("mountPath", ""))
        if name not in volumes:
            found.append(("volume_mounts", f"{name!r} is not one of the extra volumes."))
        if mount.get("readOnly") is not True:
            found.append(("volume_mounts", f"{name}: extra mounts must be read-only."))
        target = PurePosixPath(posixpath.normpath(path)) if path.startswith("/") else None
        if target is not None and (target == protected[0] or target in protected[0].parents):
            found.append(("volume_mounts", f"{path!r} would hide the home."))
        elif target is None or any(
            target == other or target in other.parents or other in target.parents
            for other in protected[1:]
        ):
            found.append(
                (
                    "volume_mounts",
                    f"{path!r} must be an absolute path outside scratch and the library.",
                )
            )
    portal_set = {variable.name for variable in _portal_env()}
    for variable in extras.get("env") or {}:
        if not _ENV_NAME.fullmatch(variable):
            found.append(("env", f"{variable!r} is not a valid variable name."))
        elif variable in portal_set:
            found.append(("env", f"{variable} is set by the portal and cannot be replaced."))
    return found


def is_extended_resource(name: str) -> bool:
    """A name Kubernetes takes as an extended resource (``IsExtendedResourceName``).

    ``<DNS subdomain>/<name>``: an unprefixed name (``cpu``, ``memory``,
    ``ephemeral-storage``, ``hugepages-2Mi``…) or one in the ``kubernetes.io`` namespace is a
    native resource, which the portal sets itself or a device plugin may not advertise.
    """
    domain, slash, resource = name.partition("/")
    return (
        bool(slash)
        # Kubernetes checks "requests." + name too (the quota's name for it): 9 more characters.
        and len(domain) <= 253 - len("requests.")
        and is_dns_subdomain(domain)
        and not domain.endswith("kubernetes.io")  # Kubernetes: "kubernetes.io/" in the name
        and not domain.startswith("requests.")
        and len(resource) <= 63
        and bool(_RESOURCE_NAME.fullmatch(resource))
    )


def _portal_env() -> list[V1EnvVar]:
    pod = sample_pod({})
    return [V1EnvVar(name=item["name"]) for item in pod["spec"]["containers"][0]["env"]]

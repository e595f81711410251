"""The small renderer does what kustomize does for the features ``deploy/`` uses, and refuses
the rest. The same sample tree is rendered by kubectl in ``test_renderers.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.kustomize_lite import Unsupported, build, config_map_hash, split_image
from tests.deploy.samples import sample_tree, write


def by_id(objects: list[dict]) -> dict[tuple[str, str, str], dict]:
    return {
        (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"]): obj
        for obj in objects
    }


def test_config_map_hash_is_kustomizes() -> None:
    # Suffixes kubectl kustomize (kustomize v5.5) gave for these maps.
    assert config_map_hash("x", {"A": "b"}) == "b9t2424hkf"
    assert config_map_hash("x", {"A": "b<&>c", "B": "é€ x", "C": "quoted"}) == "kcdcmc2b2g"


def test_overlay_merges_the_generated_map_and_references_follow(tmp_path: Path) -> None:
    objects = by_id(build(sample_tree(tmp_path)))

    [config_map] = [o for key, o in objects.items() if key[:2] == ("ConfigMap", "apps")]
    name = config_map["metadata"]["name"]
    assert name == f"settings-{config_map_hash('settings', config_map['data'])}"
    assert config_map["data"] == {
        "INDENTED": "value with = sign",
        "EMPTY": "filled",
        "QUOTED": "kept inside",
        "ADDED": "yes",
    }
    assert config_map["metadata"]["labels"] == {"app": "demo"}
    pod = objects[("Deployment", "apps", "demo")]["spec"]["template"]["spec"]
    assert pod["containers"][0]["envFrom"][0]["configMapRef"]["name"] == name
    assert pod["containers"][0]["env"][0]["valueFrom"]["configMapKeyRef"]["name"] == name
    assert pod["volumes"] == [{"name": "config", "configMap": {"name": name}}]
    assert objects[("ConfigMap", "other", "settings")]["data"]["UNRELATED"]


def test_overlay_patches_scales_and_retags(tmp_path: Path) -> None:
    deployment = by_id(build(sample_tree(tmp_path)))[("Deployment", "apps", "demo")]

    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["labels"] == {"tier": "front"}
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["--serve", "--fast"]
    assert pod["containers"][0]["image"] == "registry.example.org/demo:2.0"
    assert pod["initContainers"][0]["image"] == (
        "registry.local:5000/tools/init@sha256:0123456789abcdef"
    )


@pytest.mark.parametrize(
    ("image", "parts"),
    [
        ("demo", ("demo", "", "")),
        ("registry.local:5000/tools/init:1.0", ("registry.local:5000/tools/init", "1.0", "")),
        ("quay.io/x/y@sha256:ab", ("quay.io/x/y", "", "sha256:ab")),
    ],
)
def test_split_image_keeps_a_registry_port_in_the_name(
    image: str, parts: tuple[str, str, str]
) -> None:
    assert split_image(image) == parts


@pytest.mark.parametrize(
    ("kustomization", "words"),
    [
        ("resources: [a.yaml]\nnamePrefix: x-\n", "namePrefix"),
        ("resources: [a.yaml]\npatches:\n  - target: {kind: Service, name: a}\n"
         "    patch: '{metadata: {labels: {a: b}}}'\n", "JSON 6902"),
        ("resources: [a.yaml]\npatches:\n  - target: {kind: Service, name: nothing}\n"
         "    patch: '[{op: remove, path: /spec}]'\n", "matches no object"),
        ("resources: [a.yaml]\nreplicas: [{name: a, count: 2}]\n", "matches no workload"),
        ("resources: [a.yaml]\nconfigMapGenerator: [{name: c, files: [a.yaml]}]\n", "files"),
    ],
)  # fmt: skip
def test_unimplemented_features_are_refused(tmp_path: Path, kustomization: str, words: str) -> None:
    write(tmp_path / "a.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: a, namespace: n}\n")
    write(tmp_path / "kustomization.yaml", kustomization)

    with pytest.raises(Unsupported, match=words):
        build(tmp_path)

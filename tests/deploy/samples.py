"""A kustomization that uses every feature the small renderer implements: rendered by it in
``test_kustomize_lite.py``, and by kubectl as well in ``test_renderers.py``."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dedent(text))


def sample_tree(root: Path) -> Path:
    """A base and an overlay using every implemented feature; returns the overlay."""
    write(
        root / "base" / "kustomization.yaml",
        """\
        resources: [app.yaml]
        configMapGenerator:
          - name: settings
            namespace: apps
            envs: [settings.env]
            literals: ["QUOTED='kept inside'"]
            options:
              labels: {app: demo}
        """,
    )
    write(
        root / "base" / "settings.env",
        """\
        # a comment
          INDENTED=value with = sign
        EMPTY=
        """,
    )
    write(
        root / "base" / "app.yaml",
        """\
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: demo, namespace: apps, labels: {app: demo}}
        spec:
          replicas: 1
          selector: {matchLabels: {app: demo}}
          template:
            metadata: {labels: {app: demo}}
            spec:
              initContainers:
                - {name: init, image: "registry.local:5000/tools/init:1.0"}
              containers:
                - name: app
                  image: demo
                  envFrom: [{configMapRef: {name: settings}}]
                  env:
                    - name: ONE
                      valueFrom: {configMapKeyRef: {name: settings, key: EMPTY}}
              volumes:
                - {name: config, configMap: {name: settings}}
                - name: projected
                  projected: {sources: [{configMap: {name: settings}}]}
        ---
        apiVersion: v1
        kind: ConfigMap
        metadata: {name: settings, namespace: other}
        data: {UNRELATED: "a map of the same name elsewhere: not renamed"}
        """,
    )
    write(
        root / "overlay" / "kustomization.yaml",
        """\
        resources: [../base]
        images:
          - {name: demo, newName: registry.example.org/demo, newTag: "2.0"}
          - {name: registry.local:5000/tools/init, digest: "sha256:0123456789abcdef"}
        replicas:
          - {name: demo, count: 3}
        configMapGenerator:
          - name: settings
            namespace: apps
            behavior: merge
            literals: [EMPTY=filled, ADDED=yes]
        patches:
          - path: patch.yaml
            target: {kind: Deployment, name: demo, namespace: apps}
          - target: {kind: Deployment, name: demo}
            patch: |-
              - {op: remove, path: /spec/template/spec/volumes/1}
        """,
    )
    write(
        root / "overlay" / "patch.yaml",
        """\
        - {op: add, path: /spec/template/spec/containers/0/args, value: [--serve]}
        - {op: add, path: /spec/template/spec/containers/0/args/-, value: --fast}
        - {op: replace, path: /metadata/labels, value: {tier: front}}
        """,
    )
    return root / "overlay"

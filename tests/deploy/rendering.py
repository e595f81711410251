"""Rendering the kustomizations under ``deploy/`` for the tests.

``kubectl kustomize`` when ``kubectl`` is on ``PATH`` (what operators run); otherwise the small
renderer in :mod:`tests.deploy.kustomize_lite`, which implements exactly the kustomize features
``deploy/`` uses. ``test_renderers.py`` checks that the two agree wherever both exist.
"""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from tests.deploy import kustomize_lite

Obj = dict[str, Any]

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
BASE = DEPLOY / "base"
OVERLAYS = DEPLOY / "overlays"
SECRET_EXAMPLE = BASE / "secret.example.yaml"
# Set on machines that must cross-check with the real kustomize: there, a missing kubectl fails
# the comparison instead of skipping it.
KUBECTL_REQUIRED = os.environ.get("KUBECTL_REQUIRED", "") == "1"


def kustomizations() -> dict[str, Path]:
    """The base and every overlay, by a short name (``base``, ``staging``, …)."""
    found = {"base": BASE}
    for folder in sorted(OVERLAYS.iterdir()):
        if (folder / "kustomization.yaml").is_file():
            found[folder.name] = folder
    return found


def overlay_names() -> list[str]:
    return [name for name in kustomizations() if name != "base"]


def kubectl() -> str | None:
    return shutil.which("kubectl")


def render_with_kubectl(folder: Path) -> list[Obj]:
    binary = kubectl()
    if binary is None:
        raise RuntimeError("kubectl is not on PATH")
    result = subprocess.run(
        [binary, "kustomize", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {folder} failed: {result.stderr.strip()}")
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def render_with_lite(folder: Path) -> list[Obj]:
    return kustomize_lite.build(folder)


@cache
def _rendered(folder: str) -> tuple[Obj, ...]:
    path = Path(folder)
    return tuple(render_with_kubectl(path) if kubectl() else render_with_lite(path))


def render(name: str) -> list[Obj]:
    """The objects of the kustomization ``name`` (a fresh copy: tests may change it)."""
    return copy.deepcopy(list(_rendered(str(kustomizations()[name]))))


def renderer_name() -> str:
    return "kubectl kustomize" if kubectl() else "tests/deploy/kustomize_lite.py"


def secret_example() -> list[Obj]:
    """The Secrets the operator creates (not rendered: kubectl apply -k must never overwrite
    them), as documented in ``deploy/base/secret.example.yaml``."""
    return [doc for doc in yaml.safe_load_all(SECRET_EXAMPLE.read_text()) if doc]


def identity(obj: Obj) -> tuple[str, str, str]:
    meta = obj.get("metadata", {})
    return obj.get("kind", ""), meta.get("namespace", ""), meta.get("name", "")

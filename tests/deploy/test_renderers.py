"""Where kubectl is installed, the small renderer gives exactly what ``kubectl kustomize``
gives, for every kustomization under ``deploy/`` and for a sample using every feature it
implements. This is the only test that needs kubectl: without it, it is skipped (and says
why), unless ``KUBECTL_REQUIRED=1`` makes a missing kubectl a failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.deploy.rendering import (
    KUBECTL_REQUIRED,
    identity,
    kubectl,
    kustomizations,
    render_with_kubectl,
    render_with_lite,
)
from tests.deploy.samples import sample_tree


def require_kubectl() -> None:
    if kubectl() is not None:
        return
    if KUBECTL_REQUIRED:
        pytest.fail("KUBECTL_REQUIRED=1, but kubectl is not on PATH")
    pytest.skip(
        "kubectl is not on PATH: tests/deploy rendered with tests/deploy/kustomize_lite.py, "
        "not cross-checked against kubectl kustomize here (KUBECTL_REQUIRED=1 makes this fail)"
    )


def assert_same_objects(lite: list[dict[str, Any]], real: list[dict[str, Any]]) -> None:
    lite_by_id = {identity(obj): obj for obj in lite}
    real_by_id = {identity(obj): obj for obj in real}

    assert sorted(lite_by_id) == sorted(real_by_id)
    for key, obj in real_by_id.items():
        assert lite_by_id[key] == obj, f"{key} differs"


@pytest.mark.parametrize("name", list(kustomizations()))
def test_small_renderer_agrees_with_kubectl_on_deploy(name: str) -> None:
    require_kubectl()
    folder = kustomizations()[name]

    assert_same_objects(render_with_lite(folder), render_with_kubectl(folder))


def test_small_renderer_agrees_with_kubectl_on_every_feature(tmp_path: Path) -> None:
    require_kubectl()
    overlay = sample_tree(tmp_path)

    assert_same_objects(render_with_lite(overlay), render_with_kubectl(overlay))

"""Fixtures for the fake Kubernetes API server: ``kube_server``, ``kubeconfig``, ``kubelet``.

Other test packages get them with ``pytest_plugins = ["tests.kube.fixtures"]`` in the root
``tests/conftest.py`` (or by importing them into their own ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kube.apiserver import DEFAULT_NAMESPACE, FakeApiServer
from tests.kube.kubelet import Kubelet


@pytest.fixture
def kube_server() -> Iterator[FakeApiServer]:
    """A fresh fake API server for the test; a test fails if the fake itself broke meanwhile."""
    server = FakeApiServer().start()
    try:
        yield server
    finally:
        server.stop()
    if server.internal_errors:
        pytest.fail(f"the fake API server failed internally: {server.internal_errors!r}")


@pytest.fixture
def kubeconfig(kube_server: FakeApiServer, tmp_path: Path) -> Path:
    """A kubeconfig file for ``kube_server`` (current namespace ``jupyter-sessions``)."""
    return kube_server.write_kubeconfig(tmp_path / "kubeconfig", namespace=DEFAULT_NAMESPACE)


@pytest.fixture
def kubelet(kube_server: FakeApiServer) -> Iterator[Kubelet]:
    """The scheduler and kubelet of namespace ``jupyter-sessions`` on ``kube_server``, which
    serves the pod logs it keeps."""
    node = Kubelet(kube_server.api_client(), DEFAULT_NAMESPACE)
    kube_server.attach_kubelet(node)
    try:
        yield node
    finally:
        node.stop()

"""The Kubernetes spawner against a real cluster: what the fake API server cannot prove.

Runs only when ``KUBECONFIG`` names a cluster (kind, k3d, a staging cluster), in the namespace
``KUBE_TEST_NAMESPACE`` (default ``jupyter-sessions-test``, which must exist, with a PVC named
``scratch`` and, for the network test, a NetworkPolicy-enforcing CNI). No cluster can run on the
development and CI machines, so there these tests are reported as skipped, with this reason.

    KUBECONFIG=~/.kube/config .venv/bin/pytest -m cluster
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from sessions_app.spawners.base import ServerStatus, SpawnRequest
from sessions_app.spawners.kube import KubernetesSpawner
from sessions_app.spawners.kube_objects import KubeConfig
from tests.sessions_app.spawner_contract import SpawnerContract, make_request, wait_for

pytestmark = [
    pytest.mark.cluster,
    pytest.mark.skipif(
        not os.environ.get("KUBECONFIG"),
        reason="no Kubernetes cluster here: set KUBECONFIG to run the cluster tests",
    ),
]

NAMESPACE = os.environ.get("KUBE_TEST_NAMESPACE", "jupyter-sessions-test")
IMAGE = os.environ.get("KUBE_TEST_IMAGE", "quay.io/jupyter/minimal-notebook:python-3.11")


def cluster_spawner(**overrides: object) -> KubernetesSpawner:
    options: dict[str, object] = {"config_file": os.environ["KUBECONFIG"]}
    options.update(overrides)
    return KubernetesSpawner(KubeConfig(namespace=NAMESPACE), **options)  # type: ignore[arg-type]


def cluster_request(tmp_path: Path, username: str = "alice", **overrides: object) -> SpawnRequest:
    fields: dict[str, object] = {
        "memory_mb": 512,
        "cpus": 1,
        "scratch_dir": tmp_path / "scratch" / "u~1",
        "home_dir": tmp_path / "home" / "u~1",
        "environment": "cluster-test",
        "backend_settings": {"image": IMAGE},
    }
    fields.update(overrides)
    return make_request(tmp_path, username, **fields)


class TestClusterContract(SpawnerContract):
    start_timeout = 600.0  # a first pull of the image takes minutes

    def make_spawner(self, tmp_path: Path) -> KubernetesSpawner:
        return cluster_spawner()

    def make_request(self, tmp_path: Path, username: str) -> SpawnRequest:
        return cluster_request(tmp_path, username)

    def assert_url_answers(self, url: str) -> None:
        # Reaching it from outside needs the ingress controller and the portal's forward-auth
        # of a full deployment; here the kubelet's readiness probe (GET <base_url>api) passed.
        assert "/user/" in url and "token" not in url


def test_the_cluster_ends_a_pod_at_its_deadline(tmp_path: Path) -> None:
    spawner = cluster_spawner()
    state = spawner.start(cluster_request(tmp_path, duration_seconds=30), lambda m: None)
    try:
        wait_for(spawner, state, ServerStatus.RUNNING, timeout=600)
        deadline = time.monotonic() + 180
        while (result := spawner.poll(state)).status != ServerStatus.GONE:
            assert time.monotonic() < deadline, "the pod outlived its activeDeadlineSeconds"
            time.sleep(2)
        assert result.deadline_exceeded
    finally:
        spawner.stop(state)


def test_a_session_no_node_can_hold_fails_as_unschedulable(tmp_path: Path) -> None:
    spawner = cluster_spawner(unschedulable_seconds=20)
    state = spawner.start(cluster_request(tmp_path, memory_mb=64 * 1024 * 1024), lambda m: None)
    try:
        deadline = time.monotonic() + 120
        while (result := spawner.poll(state)).status != ServerStatus.GONE:
            assert time.monotonic() < deadline
            time.sleep(2)
        assert "room" in result.message
    finally:
        spawner.stop(state)

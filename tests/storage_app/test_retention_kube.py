"""Retention of private storage with the Kubernetes back-end: the home is a volume of the
sessions namespace, which the workers do not mount (their folder is only a name, and may be
gone after a restart). The volume is found, warned about and removed like a folder; the API is
the fake server of tests/kube (no cluster can run here)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.core import mail
from kubernetes.client import ApiClient, CoreV1Api

from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import SpawnRequest
from sessions_app.spawners.kube_objects import KubeConfig, home_claim_name, make_pvc
from storage_app.accounts import storage_account_for
from storage_app.layout import home_path
from storage_app.models import RemovalRecord, StorageAccount
from storage_app.reports import RetentionOutcome
from storage_app.retention import private_retention_sweep
from tests.kube.apiserver import FakeApiServer
from tests.storage_app.test_services import T0

pytestmark = pytest.mark.django_db

NS = "jupyter-sessions"
DEADLINE = T0 + timedelta(days=31)


@pytest.fixture
def kube(settings: Any, kubeconfig: Path) -> Iterator[None]:
    settings.SPAWNER = "kubernetes"
    settings.KUBE_CONFIG_FILE = str(kubeconfig)
    settings.KUBE_RETRIES = 1
    get_spawner.cache_clear()
    yield
    get_spawner.cache_clear()


def _volume_for(user: User, server: FakeApiServer) -> str:
    request = SpawnRequest(
        session_id="s",
        username=user.username,
        memory_mb=512,
        cpus=1,
        duration_seconds=60,
        home_dir=home_path(user),
    )
    claim = make_pvc(KubeConfig(namespace=NS), request)
    body = ApiClient().sanitize_for_serialization(claim)
    CoreV1Api(server.api_client()).create_namespaced_persistent_volume_claim(NS, body)
    return home_claim_name(home_path(user).name)


@pytest.fixture
def sweep_at(django_capture_on_commit_callbacks: Any) -> Callable[..., list[RetentionOutcome]]:
    def run(moment: datetime, **kwargs: Any) -> list[RetentionOutcome]:
        with time_machine.travel(moment, tick=False):
            with django_capture_on_commit_callbacks(execute=True):
                return private_retention_sweep(**kwargs)

    return run


def test_a_home_volume_without_a_folder_is_warned_about_and_removed(
    kube: None, owner: User, kube_server: FakeApiServer, sweep_at: Callable[..., Any]
) -> None:
    storage_account_for(owner, T0)
    name = _volume_for(owner, kube_server)
    assert not home_path(owner).exists()  # the worker that made it was restarted since

    assert [o.action for o in sweep_at(DEADLINE - timedelta(days=7))] == ["warned"]
    assert [o.action for o in sweep_at(DEADLINE - timedelta(days=1))] == ["warned"]
    outcomes = sweep_at(DEADLINE + timedelta(minutes=5))

    assert [o.action for o in outcomes] == ["deleted"]
    assert kube_server.get("persistentvolumeclaims", NS, name) is None
    assert StorageAccount.objects.get(user=owner).private_deleted_at is not None
    assert RemovalRecord.objects.filter(user=owner, rule="private_retention").count() == 1
    assert "was deleted" in mail.outbox[-1].subject


def test_an_account_with_neither_folder_nor_volume_has_nothing_to_lose(
    kube: None, owner: User, kube_server: FakeApiServer, sweep_at: Callable[..., Any]
) -> None:
    storage_account_for(owner, T0)

    assert sweep_at(DEADLINE - timedelta(days=7)) == []
    assert sweep_at(DEADLINE + timedelta(minutes=5)) == []
    assert mail.outbox == []


def test_a_cluster_that_does_not_answer_keeps_the_home(
    kube: None, owner: User, kube_server: FakeApiServer, sweep_at: Callable[..., Any]
) -> None:
    storage_account_for(owner, T0)
    name = _volume_for(owner, kube_server)
    sweep_at(DEADLINE - timedelta(days=7))
    sweep_at(DEADLINE - timedelta(days=1))
    kube_server.fail_next("DELETE", r"/persistentvolumeclaims/", 503)  # one try, under the lock

    outcomes = sweep_at(DEADLINE + timedelta(minutes=5))

    assert [o.action for o in outcomes] == ["kept"]
    assert "did not remove the home's volume" in outcomes[0].detail
    assert home_path(owner).is_dir()  # renamed back: still the user's
    assert kube_server.get("persistentvolumeclaims", NS, name) is not None
    assert StorageAccount.objects.get(user=owner).private_deleted_at is None
    # The next sweep, with the cluster back, deletes it.
    assert [o.action for o in sweep_at(DEADLINE + timedelta(hours=1))] == ["deleted"]
    assert kube_server.get("persistentvolumeclaims", NS, name) is None

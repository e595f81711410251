"""A start the cluster fails for a moment is retried by the spawn task (Celery's retry, with
backoff, within the spawn timeout), saying so on the session; a refusal fails it at once.

The real worker and client, against the fake API server's faults (``fail_next``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.spawners import get_spawner
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.lifecycle import in_state, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PODS = r"/namespaces/jupyter-sessions/pods$"


@pytest.fixture
def flow(
    settings: Any, kubeconfig: Path, environment: Environment, celery_worker: Any, accepted: User
) -> Iterator[User]:
    settings.SPAWNER = "kubernetes"
    settings.KUBE_CONFIG_FILE = str(kubeconfig)
    settings.KUBE_PUBLIC_URL = "https://jupyter.example.org"
    settings.KUBE_RETRIES = 0  # each try of the task is one request: the task's retries count
    settings.SPAWN_TIMEOUT_SECONDS = 12
    environment.image = "registry.example.org/jupyter/session:2026.11"
    environment.save()
    get_spawner.cache_clear()
    yield accepted
    get_spawner.cache_clear()


def _launch(api: APIClient) -> str:
    response = api.post("/api/v1/session/", {"environment": "ecmwf-dss"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _messages_until(session_id: str, *states: str, timeout: float = 30) -> tuple[Session, set[str]]:
    """The session once in one of ``states``, and every progress line seen on the way."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session = Session.objects.get(pk=session_id)
        seen.add(session.message)
        if session.state in states:
            return session, seen
        time.sleep(0.05)
    pytest.fail(f"session still {session.state}: {session.message}")


def test_a_busy_cluster_is_tried_again_and_the_session_runs(
    flow: User, api: APIClient, kube_server: FakeApiServer, kubelet: Kubelet
) -> None:
    kubelet.auto(delay=0.05)
    kube_server.fail_next("POST", PODS, 503, times=2)

    session_id = _launch(api)
    session, seen = _messages_until(session_id, Session.State.RUNNING, Session.State.FAILED)

    assert session.state == Session.State.RUNNING, session.message
    assert len(kube_server.requests_to("POST", PODS)) == 3
    assert any("Trying again in 1 s" in line for line in seen), seen
    assert len(kube_server.objects("pods", "jupyter-sessions")) == 1


def test_a_refusal_fails_at_once_with_the_clusters_reason(
    flow: User, api: APIClient, kube_server: FakeApiServer
) -> None:
    kube_server.fail_next(
        "POST",
        PODS,
        403,
        body={
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Forbidden",
            "code": 403,
            "message": "exceeded quota: sessions",
        },
    )

    session = wait_for(_launch(api), in_state(Session.State.FAILED), timeout=30)

    assert "exceeded quota" in session.message
    assert len(kube_server.requests_to("POST", PODS)) == 1


def test_a_cluster_that_stays_away_fails_the_start_within_the_spawn_timeout(
    flow: User, api: APIClient, kube_server: FakeApiServer
) -> None:
    kube_server.fail_next("POST", PODS, 503, times=100)
    began = time.monotonic()

    session = wait_for(_launch(api), in_state(Session.State.FAILED), timeout=30)

    # Tries at 0, 1, 3 and 7 s; the next would be 15 s after the admission, past 12 s.
    assert time.monotonic() - began < 12
    assert "did not manage to create the server's pod" in session.message
    assert len(kube_server.requests_to("POST", PODS)) == 4
    assert kube_server.objects("pods", "jupyter-sessions") == []

"""``SPAWNER=kubernetes`` end to end: launch → running → stop / expire / deadline, through the same
API, pages, services and real Celery worker as the local back-end, against the fake API server
(no cluster can run here: see ``tests/sessions_app/test_spawner_kube.py``). The test's kubelet
schedules, pulls and runs every new pod, or plays the failure a case needs.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.reconcile import sessions_reconcile
from sessions_app.services import sessions_expire_overdue
from sessions_app.spawners import get_spawner
from sessions_app.spawners.kube import KubernetesSpawner
from sessions_app.spawners.kube_objects import label_value, session_name
from sessions_app.worker_steps import ServerWatchStep
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.lifecycle import in_state, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

NS = "jupyter-sessions"
PUBLIC_URL = "https://jupyter.example.org"


@pytest.fixture
def kube_settings(settings: Any, kubeconfig: Path, environment: Environment) -> Iterator[None]:
    settings.SPAWNER = "kubernetes"
    settings.KUBE_CONFIG_FILE = str(kubeconfig)
    settings.KUBE_PUBLIC_URL = PUBLIC_URL
    settings.KUBE_RETRIES = 2
    settings.SPAWN_TIMEOUT_SECONDS = 30
    environment.image = "registry.example.org/jupyter/session:2026.11"
    environment.priority_class_name = "session-small"
    environment.save()
    get_spawner.cache_clear()
    yield
    get_spawner.cache_clear()


@pytest.fixture
def flow(kube_settings: None, celery_worker: Any, accepted: User) -> User:
    """Settings first, then the worker (its clean-up lists the Kubernetes spawner's pods)."""
    return accepted


def _launch(api: APIClient) -> str:
    response = api.post("/api/v1/session/", {"environment": "ecmwf-dss"}, format="json")
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def _plant_orphan(kube_server: FakeApiServer, like: str, orphan_id: str) -> str:
    """A pod like the session pod ``like`` for a session the database knows nothing of (its
    row was lost, or deleted by staff); returns its name."""
    spawner = get_spawner()
    assert isinstance(spawner, KubernetesSpawner)
    template = kube_server.get("pods", NS, like)
    assert template is not None
    name = session_name("ghost", orphan_id)
    labels = {**template["metadata"]["labels"], "jupyter-portal/session": label_value(orphan_id)}
    spawner.core.create_namespaced_pod(
        NS,
        cast(
            Any,
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name, "labels": labels},
                "spec": template["spec"],
            },
        ),
    )
    return name


def test_launch_runs_a_pod_reached_through_its_route_until_the_user_stops_it(
    flow: User,
    api: APIClient,
    client: Client,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    environment: Environment,
) -> None:
    kubelet.auto(delay=0.05)

    session_id = _launch(api)
    session = wait_for(session_id, in_state(Session.State.RUNNING), timeout=60)

    name = session_name(flow.username, session_id)
    pod = kube_server.get("pods", NS, name)
    assert pod is not None
    assert pod["spec"]["priorityClassName"] == "session-small"
    # No token in the URL: the ingress adds the server's credential after the forward-auth.
    assert session.url == f"{PUBLIC_URL}/user/{flow.username}/lab"
    assert session.expires_at is not None and session.started_at is not None
    # The countdown starts with the pod (its deadline counts from there).
    pod_start = datetime.fromisoformat(pod["status"]["startTime"].replace("Z", "+00:00"))
    clock_start = session.expires_at - environment.max_duration
    # startTime has whole seconds; the clock never starts before the portal asked for the pod
    assert timedelta(0) <= clock_start - pod_start < timedelta(seconds=1)
    assert clock_start <= session.started_at
    # The API and the session page show the route; the forward-auth endpoint lets the owner in.
    assert api.get("/api/v1/session/").json()["url"] == session.url
    allowed = api.get(reverse("session-route-auth", args=[session_id]))
    assert allowed.status_code == 200
    token = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}[
        "JUPYTER_TOKEN"
    ]
    assert allowed.headers["Authorization"] == f"token {token}"
    page = api.get("/session/")
    assert session.url in page.content.decode()
    for answer in (page, api.get("/api/v1/session/")):
        assert token not in answer.content.decode()
    # Someone else's browser gets no further than the sign-in.
    assert client.get(reverse("session-route-auth", args=[session_id])).status_code == 401

    response = api.delete("/api/v1/session/")
    assert response.status_code == 202
    session = wait_for(session_id, in_state(Session.State.STOPPED), timeout=60)

    assert session.reason == Session.Reason.USER_STOPPED
    assert kube_server.get("pods", NS, name) is None
    assert kube_server.get("ingresses", NS, name) is None
    assert api.get(reverse("session-route-auth", args=[session_id])).status_code == 403
    # The home outlives the session.
    assert len(kube_server.objects("persistentvolumeclaims", NS)) == 1


def test_expiry_stops_the_pod(
    flow: User, api: APIClient, kube_server: FakeApiServer, kubelet: Kubelet
) -> None:
    kubelet.auto(delay=0.05)
    session_id = _launch(api)
    wait_for(session_id, in_state(Session.State.RUNNING), timeout=60)
    # Time passes: the deadline task is hours away, the sweep is the backstop that runs now.
    Session.objects.filter(pk=session_id).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert sessions_expire_overdue() == 1
    session = wait_for(session_id, in_state(Session.State.EXPIRED), timeout=60)

    assert session.reason == Session.Reason.TIME_LIMIT
    assert kube_server.objects("pods", NS) == []


def test_a_pod_ended_by_its_deadline_closes_the_session_as_expired(
    flow: User,
    api: APIClient,
    kube_server: FakeApiServer,
    kubelet: Kubelet,
    celery_worker: Any,
) -> None:
    kubelet.auto(delay=0.05)
    session_id = _launch(api)
    wait_for(session_id, in_state(Session.State.RUNNING), timeout=60)
    kubelet.stop()
    # No worker watches the pods any more (else its watch, not the reconcile, would close it).
    watching = [step for step in celery_worker.steps if isinstance(step, ServerWatchStep)]
    assert watching
    for step in watching:
        step.stop(celery_worker)
    # Every portal process was down at the deadline; the cluster ended the pod on its own.
    kubelet.deadline_exceeded(session_name(flow.username, session_id))

    result = sessions_reconcile()

    session = Session.objects.get(pk=session_id)
    assert result["expired"] == 1
    assert session.state == Session.State.EXPIRED
    assert session.reason == Session.Reason.TIME_LIMIT
    assert kube_server.objects("pods", NS) == []


def test_a_vanished_pod_fails_the_session_and_an_orphan_pod_is_deleted(
    flow: User, api: APIClient, kube_server: FakeApiServer, kubelet: Kubelet
) -> None:
    kubelet.auto(delay=0.05)
    session_id = _launch(api)
    wait_for(session_id, in_state(Session.State.RUNNING), timeout=60)
    spawner = get_spawner()
    assert isinstance(spawner, KubernetesSpawner)
    # A pod the database knows nothing of.
    _plant_orphan(
        kube_server, session_name(flow.username, session_id), "7d3f6c1e-0000-4000-8000-000000000001"
    )
    # And the session's own pod disappears (a node lost, a human with kubectl).
    spawner.core.delete_namespaced_pod(session_name(flow.username, session_id), NS)

    result = sessions_reconcile()

    session = Session.objects.get(pk=session_id)
    assert (result["died"], result["orphans"]) == (1, 1)
    assert session.state == Session.State.FAILED
    assert session.reason == Session.Reason.SERVER_DIED
    assert "pod is gone" in session.message
    assert kube_server.objects("pods", NS) == []


def test_an_image_that_cannot_be_pulled_fails_the_launch_with_a_readable_message(
    flow: User, api: APIClient, kube_server: FakeApiServer, kubelet: Kubelet
) -> None:
    session_id = _launch(api)
    name = session_name(flow.username, session_id)
    wait_for(session_id, lambda s: kube_server.get("pods", NS, name) is not None, timeout=60)
    kubelet.schedule(name)
    kubelet.pulling(name)
    kubelet.image_pull_failed(name)

    session = wait_for(session_id, in_state(Session.State.FAILED), timeout=60)

    assert session.reason == Session.Reason.BACKEND_ERROR
    assert "registry.example.org/jupyter/session:2026.11 could not be downloaded" in (
        session.message
    )
    assert kube_server.objects("pods", NS) == []
    assert kube_server.objects("ingresses", NS) == []


def test_reconcile_goes_on_past_a_server_it_cannot_stop(
    flow: User, api: APIClient, kube_server: FakeApiServer, kubelet: Kubelet
) -> None:
    kubelet.auto(delay=0.05)
    session_id = _launch(api)
    wait_for(session_id, in_state(Session.State.RUNNING), timeout=60)
    kubelet.stop()
    name = session_name(flow.username, session_id)
    kubelet.fail(name, exit_code=1)
    # An orphan too, after it in the pass.
    orphan_name = _plant_orphan(kube_server, name, "7d3f6c1e-0000-4000-8000-000000000002")
    # The cluster refuses to remove the dead session's route (a broken webhook, say).
    kube_server.fail_next("DELETE", rf"/ingresses/{name}$", 403)

    result = sessions_reconcile()

    # The dead session fails at once (in this pass, or already by the worker's server watch);
    # the orphan is dealt with all the same, and so is the dead session's pod, which the
    # cluster would not let go of at first: an orphan now, stopped by the orphan pass.
    assert Session.objects.get(pk=session_id).state == Session.State.FAILED
    assert result["orphans"] >= 1
    assert kube_server.get("pods", NS, orphan_name) is None
    sessions_reconcile()
    assert kube_server.objects("pods", NS) == []
    assert kube_server.objects("ingresses", NS) == []

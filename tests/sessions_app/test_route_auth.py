"""The forward-auth endpoint that the ingress controller asks before each request into a session.

The authorization matrix covers every kind of caller; this file covers the session's side: its
state, a session id that does not exist, and what the answer carries.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from sessions_app.models import Environment, Session
from suspension_app.services import suspension_impose
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


def _session(user: User, environment: Environment, state: str) -> Session:
    now = timezone.now()
    running = state in (Session.State.RUNNING, Session.State.STOPPING)
    return Session.objects.create(
        user=user,
        environment=environment,
        state=state,
        created_at=now - timedelta(seconds=30),
        started_at=now if running else None,
        expires_at=now + environment.max_duration if running else None,
        ended_at=now if state in ("stopped", "expired", "failed") else None,
    )


def _ask(client: Client, session_id: uuid.UUID) -> tuple[int, str]:
    response = client.get(reverse("session-route-auth", args=[session_id]))
    return response.status_code, response.content.decode()


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("starting", 200),  # JupyterLab's first requests may come before the row says running
        ("running", 200),
        ("queued", 403),
        ("stopping", 403),
        ("stopped", 403),
        ("expired", 403),
        ("failed", 403),
    ],
)
def test_only_a_starting_or_running_session_of_ones_own_lets_requests_through(
    client: Client, owner: User, environment: Environment, state: str, status: int
) -> None:
    session = _session(owner, environment, state)
    login_verified(client, owner)

    assert _ask(client, session.pk)[0] == status


def test_the_answer_is_never_a_redirect_and_names_the_user(
    client: Client, owner: User, environment: Environment
) -> None:
    session = _session(owner, environment, "running")

    anonymous = client.get(reverse("session-route-auth", args=[session.pk]))
    login_verified(client, owner)
    allowed = client.get(reverse("session-route-auth", args=[session.pk]))

    assert anonymous.status_code == 401
    assert "Location" not in anonymous.headers
    assert allowed.status_code == 200
    assert allowed.headers["X-Portal-User"] == "owner"
    assert "no-cache" in allowed.headers["Cache-Control"]


def test_an_unknown_session_is_refused(client: Client, owner: User) -> None:
    login_verified(client, owner)

    status, body = _ask(client, uuid.uuid4())

    assert status == 403
    assert "not your session" in body


def test_a_suspension_refuses_the_next_request_while_the_session_still_runs(
    client: Client, owner: User, staff: User, environment: Environment
) -> None:
    session = _session(owner, environment, "running")
    login_verified(client, owner)
    assert _ask(client, session.pk)[0] == 200

    suspension_impose(user=owner, reason="Cleanup circumvented.", imposed_by=staff)

    status, body = _ask(client, session.pk)
    assert status == 403
    assert "Cleanup circumvented." in body


def test_only_get_is_answered(client: Client, owner: User, environment: Environment) -> None:
    session = _session(owner, environment, "running")
    login_verified(client, owner)

    response = client.post(reverse("session-route-auth", args=[session.pk]))

    assert response.status_code == 405

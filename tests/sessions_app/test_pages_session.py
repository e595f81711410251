"""The session page, its status JSON and the stop button."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from sessions_app.models import Environment, Session
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
JUPYTER_URL = "http://127.0.0.1:20001/user/owner/lab?token=abc"


@pytest.fixture
def owner_client(client: Client, owner: User) -> Client:
    login_verified(client, owner)
    return client


def _running(user: User, environment: Environment, started: datetime) -> Session:
    return Session.objects.create(
        user=user,
        environment=environment,
        state=Session.State.RUNNING,
        created_at=started - timedelta(seconds=20),
        started_at=started,
        expires_at=started + environment.max_duration,
        url=JUPYTER_URL,
        spawner_state={"pid": 1},
    )


def _queued(user: User, environment: Environment, created: datetime) -> Session:
    return Session.objects.create(
        user=user,
        environment=environment,
        state=Session.State.QUEUED,
        created_at=created,
        message="Waiting for resources.",
    )


def test_user_without_sessions_is_pointed_to_the_launcher(owner_client: Client) -> None:
    response = owner_client.get("/session/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "You have no session yet." in page
    assert 'href="/"' in page
    assert owner_client.get("/session/status/").status_code == 404


def _room_for_one(settings: Any, environment: Environment) -> None:
    settings.SESSION_POOL_CPUS = environment.cpus
    settings.SESSION_POOL_MEMORY_MB = environment.memory_mb


def test_queued_session_shows_its_place_in_the_queue_and_follows_it(
    owner_client: Client,
    owner: User,
    other_user: User,
    environment: Environment,
    settings: Any,
) -> None:
    _room_for_one(settings, environment)  # the other session takes it: the owner's waits
    _queued(other_user, environment, NOW)
    _queued(owner, environment, NOW + timedelta(seconds=1))

    page = owner_client.get("/session/").content.decode()

    assert 'data-state="queued"' in page
    assert 'data-phase="queued"' in page
    assert '<div id="queue-info" data-show="queued">' in page
    assert 'You are number <strong id="queue-position-number">2</strong>' in page
    assert "Waiting for resources." in page
    assert 'data-status-url="/session/status/"' in page
    assert "sessions_app/session.js" in page
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
    assert 'id="stop-button"' in page  # a queued session can be given up


def test_starting_session_shows_the_progress_message(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    Session.objects.create(
        user=owner,
        environment=environment,
        state=Session.State.STARTING,
        created_at=timezone.now(),
        message="Waiting for the server to answer.",
    )

    page = owner_client.get("/session/").content.decode()

    assert 'data-state="starting"' in page
    assert '<span id="session-message">Waiting for the server to answer.</span>' in page
    # The parts of later phases are there for the page's script, hidden.
    assert '<div id="session-running" data-show="running" hidden>' in page
    assert '<div id="queue-info" data-show="queued" hidden>' in page


def test_running_session_shows_link_countdown_and_stop_button(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    _running(owner, environment, NOW)

    with time_machine.travel(NOW + timedelta(seconds=1), tick=False):
        response = owner_client.get("/session/")

    page = response.content.decode()
    assert (
        f'<a id="open-jupyterlab" class="button primary big" href="{JUPYTER_URL}"'
        ' target="_blank" rel="noopener">Open JupyterLab</a>'
    ) in page
    assert 'data-remaining="17999"' in page
    assert '<strong id="countdown" aria-live="off">04:59:59</strong>' in page
    assert (
        '<form method="post" action="/session/stop/" class="stop-form"'
        ' data-show="queued starting running">'
    ) in page
    assert 'id="stop-button"' in page
    assert '<div id="time-warning" class="warning-box" role="status" hidden>' in page
    # No meta refresh while running: the countdown runs in the page.
    assert 'http-equiv="refresh"' not in page


@pytest.mark.parametrize(
    ("left", "warned"),
    [(timedelta(minutes=15, seconds=1), False), (timedelta(minutes=15), True)],
    ids=["just-before-threshold", "at-threshold"],
)
def test_warning_shows_in_the_last_minutes(
    owner_client: Client,
    owner: User,
    environment: Environment,
    settings: Any,
    left: timedelta,
    warned: bool,
) -> None:
    settings.SESSION_WARNING_MINUTES = 15
    session = _running(owner, environment, NOW)
    assert session.expires_at is not None

    with time_machine.travel(session.expires_at - left, tick=False):
        page = owner_client.get("/session/").content.decode()

    assert 'data-warning-seconds="900"' in page
    assert ('class="warning-box" role="status">' in page) is warned
    assert ('class="warning-box" role="status" hidden>' in page) is not warned
    assert "Less than 15 minutes left: save your work now." in page


def test_status_reports_state_and_remaining_seconds_of_running_session(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    session = _running(owner, environment, NOW)

    with time_machine.travel(NOW + timedelta(minutes=10), tick=False):
        response = owner_client.get("/session/status/")

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    assert response.json() == {
        "id": str(session.id),
        "state": "running",
        "phase": "running",
        "state_label": "running",
        "active": True,
        "message": "",
        "queue_position": None,
        "queue_wait_minutes": None,
        "remaining_seconds": 5 * 3600 - 600,
        "expires_at": "2026-03-01T17:00:00+00:00",
        "expires_at_display": "17:00 UTC, 1 March 2026",
        "ended_at": None,
        "ended_at_display": "",
        "url": JUPYTER_URL,
        "library_status": "",
        "reason": "",
        "reason_label": "",
        "warning_minutes": 15,
    }


def test_status_reports_queue_position_of_queued_session(
    owner_client: Client, owner: User, other_user: User, environment: Environment, settings: Any
) -> None:
    _room_for_one(settings, environment)
    _running(other_user, environment, timezone.now())
    _queued(owner, environment, NOW)

    status = owner_client.get("/session/status/").json()

    assert (status["state"], status["phase"], status["state_label"]) == ("queued",) * 3
    assert status["queue_position"] == 1
    assert status["queue_wait_minutes"] == 300  # the running one's time limit, rounded up
    assert status["remaining_seconds"] is None
    assert status["url"] == ""


def test_ended_session_shows_final_state_reason_and_way_back(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    Session.objects.create(
        user=owner,
        environment=environment,
        state=Session.State.EXPIRED,
        reason=Session.Reason.TIME_LIMIT,
        message="The session reached its time limit and was stopped.",
        created_at=NOW,
        started_at=NOW,
        expires_at=NOW + timedelta(hours=5),
        ended_at=NOW + timedelta(hours=5),
    )

    page = owner_client.get("/session/").content.decode()
    status = owner_client.get("/session/status/").json()

    assert "This session has ended: <strong>expired</strong> (time limit reached)" in page
    assert "The session reached its time limit and was stopped." in page
    assert '<a class="button primary" href="/">Back to the launcher</a>' in page
    assert 'id="stop-button"' not in page
    assert "Open JupyterLab" not in page
    assert "session.js" not in page  # nothing changes any more: no polling
    assert status["active"] is False
    assert status["reason"] == "time_limit"


def test_another_users_session_is_not_shown(
    owner_client: Client, other_user: User, environment: Environment
) -> None:
    _running(other_user, environment, timezone.now())

    page = owner_client.get("/session/").content.decode()

    assert "You have no session yet." in page
    assert JUPYTER_URL not in page


def test_stop_button_stops_the_running_session_and_returns_to_the_page(
    owner_client: Client,
    owner: User,
    environment: Environment,
    django_capture_on_commit_callbacks: Any,
) -> None:
    session = _running(owner, environment, timezone.now())

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = owner_client.post("/session/stop/")

    assert response.status_code == 302
    assert response["Location"] == "/session/"
    session.refresh_from_db()
    assert session.state == Session.State.STOPPING
    assert session.reason == Session.Reason.USER_STOPPED
    assert len(callbacks) == 1  # the stop task
    page = owner_client.get("/session/").content.decode()
    assert "Your session is being stopped." in page
    assert 'data-state="stopping"' in page
    assert 'id="stop-button"' not in page


def test_stop_of_queued_session_ends_it_at_once(
    owner_client: Client, owner: User, environment: Environment
) -> None:
    session = _queued(owner, environment, timezone.now())

    owner_client.post("/session/stop/")

    session.refresh_from_db()
    assert session.state == Session.State.STOPPED
    assert "This session has ended" in owner_client.get("/session/").content.decode()


def test_stop_without_session_says_so(owner_client: Client) -> None:
    response = owner_client.post("/session/stop/", follow=True)

    assert "You have no running session to stop." in response.content.decode()


def test_stop_needs_post(owner_client: Client, owner: User, environment: Environment) -> None:
    session = _running(owner, environment, timezone.now())

    assert owner_client.get("/session/stop/").status_code == 405
    session.refresh_from_db()
    assert session.state == Session.State.RUNNING


def test_forged_stop_without_csrf_token_is_refused(owner: User, environment: Environment) -> None:
    session = _running(owner, environment, timezone.now())
    client = Client(enforce_csrf_checks=True)
    login_verified(client, owner)

    response = client.post("/session/stop/")

    assert response.status_code == 403
    session.refresh_from_db()
    assert session.state == Session.State.RUNNING


def test_anonymous_stop_is_sent_to_login(
    client: Client, owner: User, environment: Environment
) -> None:
    session = _running(owner, environment, timezone.now())

    response = client.post("/session/stop/")

    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    session.refresh_from_db()
    assert session.state == Session.State.RUNNING

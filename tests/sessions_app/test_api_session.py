"""REST API: reading (``GET``) and stopping (``DELETE``) the caller's active session."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from typing import Any
from unittest import mock

import pytest
import time_machine
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from portal.broker import PUBLISH_RETRY_POLICY
from sessions_app import events
from sessions_app.models import Environment, Session
from sessions_app.services import session_request_stop
from sessions_app.transitions import fail_start
from tests.conftest import login_verified

URL = "/api/v1/session/"
State = Session.State


def _session(user: User, environment: Environment, state: str, **fields: Any) -> Session:
    fields.setdefault("created_at", timezone.now())
    return Session.objects.create(user=user, environment=environment, state=state, **fields)


def _running(user: User, environment: Environment, started_at: datetime) -> Session:
    return _session(
        user, environment, State.RUNNING, started_at=started_at,
        expires_at=started_at + environment.max_duration, url="http://127.0.0.1:20001/user/x/",
        spawner_state={"pid": 1},
    )  # fmt: skip


def test_get_shows_a_running_session_with_its_url_and_time_left(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given: started an hour ago, with a five-hour limit
    now = timezone.now().replace(microsecond=0)
    session = _running(owner, environment, started_at=now - timedelta(hours=1))
    # when
    with time_machine.travel(now, tick=False):
        response = api.get(URL)
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(session.id)
    assert body["state"] == "running"
    assert body["environment"] == "ecmwf-dss"
    assert body["url"] == "http://127.0.0.1:20001/user/x/"
    assert body["remaining_seconds"] == 4 * 3600
    assert body["queue_position"] is None
    assert body["expires_at"] == (now + timedelta(hours=4)).isoformat().replace("+00:00", "Z")


def test_get_shows_the_queue_position_of_a_waiting_session(
    api: APIClient, owner: User, other_user: User, environment: Environment
) -> None:
    # given: another user queued first
    now = timezone.now()
    _session(other_user, environment, State.QUEUED, created_at=now - timedelta(minutes=1))
    _session(owner, environment, State.QUEUED, created_at=now, message="Waiting for resources.")
    # when
    body = api.get(URL).json()
    # then
    assert body["state"] == "queued"
    assert body["queue_position"] == 2
    assert body["message"] == "Waiting for resources."
    assert body["url"] is None
    assert body["remaining_seconds"] is None


def test_get_shows_no_url_while_the_server_is_stopping(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given: the row still holds the URL of a server that is going down
    now = timezone.now()
    _session(
        owner, environment, State.STOPPING, started_at=now, expires_at=now + timedelta(hours=5),
        url="http://127.0.0.1:20001/user/x/", reason=Session.Reason.USER_STOPPED,
    )  # fmt: skip
    # when
    body = api.get(URL).json()
    # then
    assert body["state"] == "stopping"
    assert body["url"] is None
    assert body["reason"] == "user_stopped"


def test_get_is_a_404_without_an_active_session(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given: only a finished session
    _session(owner, environment, State.STOPPED, reason=Session.Reason.USER_STOPPED)
    # when
    response = api.get(URL)
    # then
    assert response.status_code == 404
    assert response.json() == {"detail": "You have no active session.", "code": "no_active_session"}


def test_get_never_shows_another_users_session(
    api: APIClient, other_user: User, environment: Environment
) -> None:
    # given
    _running(other_user, environment, started_at=timezone.now())
    # when
    response = api.get(URL)
    # then
    assert response.status_code == 404
    assert response.json()["code"] == "no_active_session"


def test_delete_ends_a_queued_session_at_once_with_202(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given
    session = _session(owner, environment, State.QUEUED)
    # when
    response = api.delete(URL)
    # then
    assert response.status_code == 202
    body = response.json()
    assert body["id"] == str(session.id)
    assert body["state"] == "stopped"
    assert body["reason"] == "user_stopped"
    session.refresh_from_db()
    assert session.state == State.STOPPED
    assert session.ended_at is not None


def test_delete_moves_a_running_session_to_stopping_and_enqueues_the_stop(
    api: APIClient,
    owner: User,
    environment: Environment,
    django_capture_on_commit_callbacks: Any,
) -> None:
    # given
    session = _running(owner, environment, started_at=timezone.now())
    # The broker is not part of this test (the worker path is covered by the integration
    # tests): only the hand-over to Celery is replaced.
    with mock.patch("sessions_app.tasks.stop_session.apply_async") as apply_async:
        # when
        with django_capture_on_commit_callbacks(execute=True):
            response = api.delete(URL)
    # then
    assert response.status_code == 202
    assert response.json()["state"] == "stopping"
    assert response.json()["reason"] == "user_stopped"
    assert response.json()["url"] is None
    apply_async.assert_called_once_with(
        args=[str(session.id)], eta=None, retry=True, retry_policy=PUBLISH_RETRY_POLICY
    )


def test_delete_of_a_session_already_stopping_answers_202_with_it(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given: a second click while the server goes down
    now = timezone.now()
    session = _session(
        owner, environment, State.STOPPING, started_at=now, expires_at=now + timedelta(hours=5),
        reason=Session.Reason.USER_STOPPED,
    )  # fmt: skip
    # when
    response = api.delete(URL)
    # then
    assert response.status_code == 202
    assert response.json()["id"] == str(session.id)
    assert response.json()["state"] == "stopping"


def test_delete_is_a_404_without_an_active_session(api: APIClient, db: None) -> None:
    response = api.delete(URL)

    assert response.status_code == 404
    assert response.json()["code"] == "no_active_session"


def test_delete_never_stops_another_users_session(
    api: APIClient, other_user: User, environment: Environment
) -> None:
    # given
    session = _running(other_user, environment, started_at=timezone.now())
    # when
    response = api.delete(URL)
    # then
    assert response.status_code == 404
    session.refresh_from_db()
    assert session.state == State.RUNNING


@pytest.mark.parametrize("method", ["get", "delete"])
def test_session_endpoint_refuses_anonymous_callers(db: None, method: str) -> None:
    response = getattr(APIClient(), method)(URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.django_db(transaction=True)
def test_get_with_wait_answers_as_soon_as_the_session_runs(accepted: Any, environment: Any) -> None:
    # Given a starting session that another process promotes to running a moment later
    session = Session.objects.create(
        user=accepted, environment=environment, state="starting", created_at=timezone.now()
    )
    client = APIClient()
    login_verified(client, accepted)

    def promote() -> None:
        time.sleep(0.5)
        now = timezone.now()
        Session.objects.filter(pk=session.pk).update(
            state="running", started_at=now, expires_at=now + timedelta(hours=1), url="http://x/"
        )
        events.session_changed(session.pk)  # as every write in sessions_app.services does
        connection.close()

    threading.Thread(target=promote).start()

    # When the client asks with ?wait=10
    started = time.monotonic()
    response = client.get("/api/v1/session/?wait=10")

    # then the answer is the running session, long before the wait ran out
    assert response.status_code == 200
    assert response.json()["state"] == "running"
    assert time.monotonic() - started < 8


@pytest.mark.django_db
def test_get_with_a_bad_wait_is_refused(accepted: Any) -> None:
    client = APIClient()
    login_verified(client, accepted)
    response = client.get("/api/v1/session/?wait=3600")
    assert response.status_code == 400
    assert "wait" in response.json()["detail"]


def _meanwhile(change: Any) -> threading.Thread:
    """Run ``change`` in another thread half a second from now, as another process would."""

    def run() -> None:
        time.sleep(0.5)
        try:
            change()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_a_wait_answers_with_the_session_that_failed_meanwhile_and_why(
    accepted: Any, environment: Any
) -> None:
    # Given a starting session whose start fails while the client waits
    session = _session(accepted, environment, State.STARTING)
    client = APIClient()
    login_verified(client, accepted)
    failing = _meanwhile(
        lambda: fail_start(
            str(session.pk), Session.Reason.BACKEND_ERROR, "The server could not be started: boom"
        )
    )

    # When the client waits for it
    started = time.monotonic()
    response = client.get(URL, {"wait": 10})
    failing.join()

    # then the answer is that session, ended, with its reason: not "no active session"
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["state"], body["reason"]) == (
        str(session.pk),
        "failed",
        "backend_error",
    )
    assert body["message"] == "The server could not be started: boom"
    assert body["ended_at"] is not None
    assert time.monotonic() - started < 8
    # and the same session is at its own address afterwards (the history adds how it ended)
    detail = client.get(f"/api/v1/sessions/{session.pk}/").json()
    assert {name: detail[name] for name in body} == body


@pytest.mark.django_db(transaction=True)
def test_a_wait_answers_with_the_queued_session_stopped_meanwhile(
    accepted: Any, environment: Any
) -> None:
    # Given a queued session that staff take out of the queue while its owner waits
    session = _session(accepted, environment, State.QUEUED)
    client = APIClient()
    login_verified(client, accepted)
    stopping = _meanwhile(
        lambda: session_request_stop(str(session.pk), Session.Reason.STAFF_STOPPED)
    )

    response = client.get(URL, {"wait": 10})
    stopping.join()

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["state"], response.json()["reason"]) == (
        str(session.pk),
        "stopped",
        "staff_stopped",
    )


@pytest.mark.django_db(transaction=True)
def test_a_wait_without_an_active_session_is_a_404_at_once(accepted: Any, environment: Any) -> None:
    # Given only an ended session
    _session(accepted, environment, State.FAILED, reason=Session.Reason.BACKEND_ERROR)
    client = APIClient()
    login_verified(client, accepted)

    started = time.monotonic()
    response = client.get(URL, {"wait": 10})

    assert response.status_code == 404
    assert response.json()["code"] == "no_active_session"
    assert time.monotonic() - started < 5

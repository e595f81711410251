"""Waiting for a session without a thread: the long poll wakes on a notification, from the
database (PostgreSQL NOTIFY) or the broker (Redis pub/sub), never by polling; too many waits are
refused with 429; a lost listener reconnects and loses no client.

These run the async views in-process (Django's test client runs each request on an event loop
of its own); tests/sessions_app/test_waiting_server.py runs them under the real ASGI server.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app import events
from sessions_app.models import Environment, Session
from tests.conftest import login_verified

URL = "/api/v1/session/"


def _starting(user: Any, environment: Environment) -> Session:
    return Session.objects.create(
        user=user, environment=environment, state="starting", created_at=timezone.now()
    )


def _client(user: Any) -> APIClient:
    client = APIClient()
    login_verified(client, user)
    return client


def _later(seconds: float, action: Callable[[], None]) -> threading.Thread:
    def run() -> None:
        time.sleep(seconds)
        try:
            action()
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def _promote(session: Session, notify: bool = True) -> None:
    now = timezone.now()
    with transaction.atomic():
        Session.objects.filter(pk=session.pk).update(
            state="running", started_at=now, expires_at=now + timedelta(hours=1), url="http://x/"
        )
        if notify:
            events.session_changed(session.pk)


def _timed_get(client: APIClient, path: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("transport", ["postgres", "redis"])
def test_a_long_poll_wakes_when_its_session_changes(
    accepted: Any, environment: Environment, transport: str
) -> None:
    # Given a starting session, and the events carried by the database or by the broker
    with override_settings(SESSION_EVENTS=transport):
        assert events.transport() == transport
        session = _starting(accepted, environment)
        client = _client(accepted)
        # When the worker promotes it (and says so) a second into a 20-second wait
        thread = _later(1.0, lambda: _promote(session))
        response, elapsed = _timed_get(client, f"{URL}?wait=20")
        thread.join()

    # then the poll answers with the running session, woken by the message
    assert response.status_code == 200
    assert response.json()["state"] == "running"
    assert elapsed < 15, f"answered after {elapsed:.1f} s: not woken by the notification"


@pytest.mark.django_db(transaction=True)
def test_a_change_nobody_announced_is_seen_only_at_the_end_of_the_wait(
    accepted: Any, environment: Environment
) -> None:
    """No poll loop: a row changed without a notification is read when the wait ends."""
    session = _starting(accepted, environment)
    client = _client(accepted)

    thread = _later(0.2, lambda: _promote(session, notify=False))
    response, elapsed = _timed_get(client, f"{URL}?wait=3")
    thread.join()

    assert response.status_code == 200
    assert response.json()["state"] == "running"  # the final read sees it
    assert elapsed >= 2.9  # but nothing woke the poll before its time


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_change_wakes_nobody(accepted: Any, environment: Environment) -> None:
    session = _starting(accepted, environment)
    client = _client(accepted)

    def promote_then_roll_back() -> None:
        try:
            with transaction.atomic():
                _promote(session)
                raise RuntimeError("the write failed")
        except RuntimeError:
            pass

    thread = _later(0.2, promote_then_roll_back)
    response, elapsed = _timed_get(client, f"{URL}?wait=2")
    thread.join()

    assert response.json()["state"] == "starting"
    assert elapsed >= 1.9


@pytest.mark.django_db(transaction=True)
def test_a_lost_listener_reconnects_and_its_waiters_read_again(
    accepted: Any, environment: Environment
) -> None:
    # Given a client waiting on a starting session
    session = _starting(accepted, environment)
    client = _client(accepted)

    def cut_listener_then_promote() -> None:
        with connection.cursor() as cursor:
            # When the listener's connection is cut (a database restart, a network blip) …
            cursor.execute(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE application_name = 'portal-session-events' AND datname = current_database()"
            )
            assert cursor.fetchone()[0] >= 1
        # … and the session is promoted while nobody listens (the notification is lost)
        _promote(session)

    thread = _later(1.0, cut_listener_then_promote)
    response, elapsed = _timed_get(client, f"{URL}?wait=20")
    thread.join()

    # then the reconnected listener wakes every waiter, which reads the row: running
    assert response.json()["state"] == "running"
    assert elapsed < 15


@pytest.mark.django_db(transaction=True)
@override_settings(WAIT_MAX_PER_USER=1)
def test_too_many_waits_by_one_person_are_answered_429_with_retry_after(
    accepted: Any, environment: Environment
) -> None:
    session = _starting(accepted, environment)
    first: dict[str, Any] = {}

    def wait_long() -> None:
        first["response"] = _client(accepted).get(f"{URL}?wait=4")
        connection.close()

    holder = threading.Thread(target=wait_long)
    holder.start()
    time.sleep(1.0)  # the first wait is open

    response = _client(accepted).get(f"{URL}?wait=4")
    plain = _client(accepted).get(URL)  # a read without wait is not a wait
    _promote(session)
    holder.join()

    assert response.status_code == 429
    assert response["Retry-After"] == "5"
    body = response.json()
    assert body["code"] == "too_many_waits"
    assert "waiting" in body["detail"]
    assert plain.status_code == 200
    assert first["response"].status_code == 200


@pytest.mark.django_db
def test_the_long_poll_keeps_the_api_checks(accepted: Any, environment: Environment) -> None:
    assert APIClient().get(f"{URL}?wait=5").status_code == 401
    client = _client(accepted)
    bad = client.get(f"{URL}?wait=3600")
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid"
    none = client.get(f"{URL}?wait=5")  # nothing to wait for: answered at once
    assert none.status_code == 404
    assert none.json()["code"] == "no_active_session"

"""The owner's storage is measured when a session starts running and when it ends, not only by
the sweep: the storage page has a figure from the first session on (storage_app/receivers.py,
hearing sessions_app/signals.py)."""

from __future__ import annotations

import base64
import json
import os
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.test import Client
from django.utils import timezone

from portal.celery import app
from sessions_app.models import Environment, Session
from sessions_app.services import session_launch, session_request_stop
from sessions_app.transitions import transition
from storage_app.layout import home_path
from storage_app.models import StorageAccount
from tests.conftest import login_verified
from tests.sessions_app.lifecycle import in_state, wait_for

State = Session.State


def _storage_queue() -> list[tuple[str, list[Any]]]:
    """The tasks waiting on the broker's ``storage`` queue: (name, args) each."""
    broker = redis.Redis.from_url(str(settings.CELERY_BROKER_URL))
    sent = []
    for raw in broker.lrange("storage", 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        sent.append((message["headers"]["task"], args))
    return sent


@pytest.mark.django_db
def test_a_scan_of_the_owner_is_sent_once_a_session_runs_and_once_it_ends(
    owner: User,
    environment: Environment,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    # Given a session starting, and nothing on the storage queue
    app.control.purge()
    session = Session.objects.create(
        user=owner, environment=environment, state=State.QUEUED, created_at=timezone.now()
    )
    key = str(session.pk)
    scan = ("storage_app.tasks.scan_user", [owner.pk])

    # When it starts: nothing yet (no server has run in the home)
    with django_capture_on_commit_callbacks(execute=True):
        transition(key, [State.QUEUED], State.STARTING)
    assert _storage_queue() == []

    # When its server answers, then when it ends: one scan each, of the owner
    with django_capture_on_commit_callbacks(execute=True):
        now = timezone.now()
        transition(key, [State.STARTING], State.RUNNING, started_at=now, expires_at=now)
    assert _storage_queue() == [scan]
    with django_capture_on_commit_callbacks(execute=True):
        transition(key, [State.RUNNING], State.STOPPING)
    assert _storage_queue() == [scan]
    with django_capture_on_commit_callbacks(execute=True):
        transition(key, [State.STOPPING], State.STOPPED, ended_at=timezone.now())
        # A second try of the same end (another worker) changes nothing and sends nothing.
        transition(key, [State.STOPPING], State.STOPPED, ended_at=timezone.now())
    assert _storage_queue() == [scan, scan]
    app.control.purge()


@pytest.mark.django_db
def test_a_change_rolled_back_sends_no_scan(owner: User, environment: Environment) -> None:
    # Given a session that ends in a transaction that does not commit (the test's own)
    app.control.purge()
    session = Session.objects.create(
        user=owner, environment=environment, state=State.RUNNING, created_at=timezone.now(),
        started_at=timezone.now(), expires_at=timezone.now(),
    )  # fmt: skip

    transition(str(session.pk), [State.RUNNING], State.FAILED, ended_at=timezone.now())

    assert _storage_queue() == []


def _measured(user: User, after: Any = None, timeout: float = 60) -> StorageAccount:
    """The user's storage account once a measurement newer than ``after`` is on it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        account = StorageAccount.objects.filter(user=user).first()
        at = account.private_measured_at if account else None
        if account is not None and at is not None and (after is None or at > after):
            return account
        time.sleep(0.2)
    raise AssertionError(f"no measurement of {user} after {after}")


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_storage_is_measured_when_a_real_session_starts_and_ends(
    celery_worker: Any, accepted: User, environment: Environment
) -> None:
    # Given a person who never had their storage measured (no sweep runs here)
    client = Client()
    login_verified(client, accepted)
    assert "not measured yet" in client.get("/storage/").content.decode()

    # When their first session's JupyterLab runs
    launched = session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
    session = wait_for(launched.session.pk, in_state(State.RUNNING))

    # then their storage is measured then, and the storage page has a figure
    at_start = _measured(accepted)
    assert at_start.private_measured_at is not None
    assert at_start.private_measured_at >= session.updated_at - timedelta(seconds=1)
    assert "not measured yet" not in client.get("/storage/").content.decode()

    # When they leave a file in their home and stop the session
    home = home_path(accepted)
    notebook = home / "results.bin"
    notebook.write_bytes(b"\0" * 300_000)
    owner = home.stat()
    os.chown(notebook, owner.st_uid, owner.st_gid)
    assert session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)
    ended = wait_for(session.pk, in_state(State.STOPPED))

    # then it is measured again once the session ended, with the file counted
    at_end = _measured(accepted, after=at_start.private_measured_at)
    assert ended.ended_at is not None and at_end.private_measured_at is not None
    assert at_end.private_measured_at >= ended.ended_at
    assert at_end.private_bytes is not None
    assert at_end.private_bytes >= (at_start.private_bytes or 0) + 300_000

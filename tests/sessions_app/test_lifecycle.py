"""The session lifecycle end to end: a real worker on the configured broker spawns a real
JupyterLab through the local spawner, and stops or expires it."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import psutil
import pytest

from sessions_app.models import Environment, Session
from sessions_app.reconcile import sessions_reconcile
from sessions_app.services import (
    session_finish_stop,
    session_launch,
    session_request_stop,
    session_spawn,
    sessions_admit,
    sessions_expire_overdue,
)
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import ServerStatus, SpawnRequest
from sessions_app.start_watch import sessions_starting_check
from storage_app.layout import home_ensure
from tests.sessions_app.lifecycle import in_state, server_answers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


def _server_pids(session: Session) -> list[int]:
    pid = session.spawner_state.get("pid")
    assert pid, "the local spawner records the server's pid"
    try:
        process = psutil.Process(pid)
        return [pid, *(child.pid for child in process.children(recursive=True))]
    except psutil.NoSuchProcess:
        return []


def _alive(pids: list[int]) -> list[int]:
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return alive


def test_launch_runs_a_real_jupyterlab_until_the_user_stops_it(
    celery_worker: Any, accepted: Any, environment: Environment
) -> None:
    # Given a user who accepted the terms, when they launch
    result = session_launch(user=accepted, environment_slug="ecmwf-dss", options={})

    # then the worker brings a JupyterLab up that answers at the session's URL
    session = wait_for(result.session.pk, in_state(Session.State.RUNNING))
    assert f"/user/{accepted.username}/" in session.url
    assert server_answers(session.spawner_state)
    assert session.started_at is not None and session.expires_at is not None
    # counted from the server's own start, which its first process keeps (deadline.py)
    deadline = datetime.fromtimestamp(session.spawner_state["deadline"], UTC)
    assert abs(session.expires_at - deadline) < timedelta(milliseconds=1)
    assert session.expires_at <= session.started_at + environment.max_duration
    pids = _server_pids(session)

    # and launching again gives the same session
    again = session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
    assert not again.created and again.session.pk == session.pk

    # When the user stops it, it ends as stopped and leaves no process behind
    assert session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)
    session = wait_for(session.pk, in_state(Session.State.STOPPED))
    assert session.reason == Session.Reason.USER_STOPPED
    assert session.ended_at is not None
    assert _alive(pids) == []


def test_a_session_is_killed_at_its_deadline_by_the_task_scheduled_at_start(
    celery_worker: Any, accepted: Any, environment: Environment
) -> None:
    # Given an environment with the shortest duration (one minute)
    Environment.objects.filter(pk=environment.pk).update(max_duration_minutes=1)
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    session = wait_for(session.pk, in_state(Session.State.RUNNING))
    pids = _server_pids(session)

    # When its deadline passes (no sweep runs in this test: only the scheduled task)
    session = wait_for(session.pk, in_state(Session.State.EXPIRED), timeout=120)

    # then it expired for its time limit, not later than a few seconds after the deadline
    assert session.reason == Session.Reason.TIME_LIMIT
    assert session.ended_at is not None and session.expires_at is not None
    assert (session.ended_at - session.expires_at).total_seconds() < 15
    assert _alive(pids) == []


def test_the_sweep_stops_overdue_sessions_whose_deadline_task_was_lost(
    celery_worker: Any, accepted: Any, environment: Environment
) -> None:
    # Given a running session whose deadline passed without its task firing
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    session = wait_for(session.pk, in_state(Session.State.RUNNING))
    assert session.started_at is not None and session.expires_at is not None
    Session.objects.filter(pk=session.pk).update(
        started_at=session.started_at - (session.expires_at - session.started_at),
        expires_at=session.started_at,
    )

    # When the periodic sweep runs
    assert sessions_expire_overdue() == 1

    # then the session is expired and its server is gone
    session = wait_for(session.pk, in_state(Session.State.EXPIRED))
    assert not server_answers(session.spawner_state)


def test_reconcile_ends_a_session_whose_server_died_and_stops_unknown_servers(
    celery_worker: Any, accepted: Any, environment: Environment
) -> None:
    # Given a running session whose server is killed behind the portal's back
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    session = wait_for(session.pk, in_state(Session.State.RUNNING))
    os.killpg(session.spawner_state["pgid"], signal.SIGKILL)
    # and a server that no session in the database knows
    spawner = get_spawner()
    stray = SpawnRequest(
        session_id=str(uuid.uuid4()),
        username="nobody",
        user_id=99_999,
        memory_mb=2048,
        cpus=1,
        duration_seconds=600,
        home_dir=home_ensure(999_999),
    )
    state = spawner.start(stray, lambda message: None)

    # When reconcile runs
    outcome = sessions_reconcile()

    # then the dead session failed with the reason (in this pass, or already by the worker's
    # server watch, which sees a death at once), and the stray server is stopped
    session.refresh_from_db()
    assert session.state == Session.State.FAILED
    assert session.reason == Session.Reason.SERVER_DIED
    assert outcome["died"] <= 1 and outcome["orphans"] == 1
    assert spawner.poll(state).status == ServerStatus.GONE
    assert [s.session_id for s in spawner.list_servers()] == []


def test_a_stop_while_the_server_starts_ends_the_session_and_its_server(
    celery_worker: Any, accepted: Any, environment: Environment
) -> None:
    # Given a session whose server is still starting
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    session = wait_for(session.pk, in_state(Session.State.STARTING), timeout=30)

    # When the user stops it before it answers
    assert session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)

    # then it ends as stopped, never running, and no server of it is left
    session = wait_for(session.pk, in_state(Session.State.STOPPED))
    assert session.started_at is None
    spawner = get_spawner()
    deadline = time.monotonic() + 30
    while any(s.session_id == str(session.pk) for s in spawner.list_servers()):
        assert time.monotonic() < deadline, "the starting server was not stopped"
        time.sleep(0.2)


def test_a_server_that_goes_down_because_of_a_stop_does_not_fail_the_session(
    accepted: Any, environment: Environment
) -> None:
    # Given a session whose server is starting (its spawn task, run here without a worker,
    # returned once the server was asked for)
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    assert sessions_admit() == 1
    session_spawn(str(session.pk))
    session.refresh_from_db()
    assert session.state == Session.State.STARTING and session.spawner_state

    # When a stop is requested and the server goes down before the start watcher looks again
    assert session_request_stop(str(session.pk), Session.Reason.USER_STOPPED)
    os.killpg(session.spawner_state["pgid"], signal.SIGKILL)
    assert sessions_starting_check(get_spawner()) == {}

    # then the session is not failed: the stop ends it, as stopped by the user
    session.refresh_from_db()
    assert session.state == Session.State.STOPPING
    session_finish_stop(str(session.pk))
    session.refresh_from_db()
    assert (session.state, session.reason) == (Session.State.STOPPED, "user_stopped")

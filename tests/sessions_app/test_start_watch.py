"""Starts that do not block: the spawn task returns once the server was asked for, and the start
watcher (sessions_app/start_watch.py, run by every worker of the spawn queue) follows the server
until it answers, fails or times out. Real workers, real local servers: a Python that never
answers stands in for a JupyterLab that is slow to come up.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from celery.contrib.testing.worker import start_worker
from django.contrib.auth.models import User

from portal.celery import app
from sessions_app.models import Environment, Session
from sessions_app.services import (
    session_finish_stop,
    session_launch,
    session_request_stop,
    session_spawn,
    sessions_admit,
)
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import ServerStatus
from sessions_app.spawners.local import LocalProcessSpawner
from sessions_app.tasks import spawn_session
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import after_workers, all_queues
from tests.sessions_app.lifecycle import in_state, wait_for
from tests.sessions_app.local_world import session_python

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# A server that starts and never answers.
SLEEPER = [session_python(), "-c", "import time; time.sleep(600)"]


@pytest.fixture
def slow_environment(environment: Environment) -> Environment:
    environment.command = SLEEPER
    environment.save()
    return environment


@pytest.fixture
def one_thread_worker(transactional_db: None) -> Iterator[Any]:
    """A worker of every queue with a single thread: one spawn task that waited for its server
    would hold it, and nothing else would run."""
    queues = all_queues(app)
    app.control.purge()
    with start_worker(
        app,
        pool="threads",
        concurrency=1,
        queues=queues,
        perform_ping_check=False,
        shutdown_timeout=30,
    ) as worker:
        yield worker
    after_workers()


def _accepting(user: User, terms: TermsVersion) -> User:
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return user


def _server_running(session: Session) -> bool:
    pid = session.spawner_state.get("pid")
    try:
        return bool(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_spawn_task_returns_while_its_server_is_still_starting(
    accepted: User, slow_environment: Environment
) -> None:
    # Given an admitted session whose server takes its time
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    assert sessions_admit() == 1

    # When its spawn task runs (here, in this thread)
    spawn_session.apply(args=(str(session.pk),))

    # then it has returned with the server asked for and still starting: no thread waits for it
    session.refresh_from_db()
    assert session.state == Session.State.STARTING
    assert session.start_requested_at is not None
    assert _server_running(session)
    assert get_spawner().poll(session.spawner_state).status == ServerStatus.STARTING
    get_spawner().stop(session.spawner_state)


def test_one_worker_thread_starts_servers_one_after_another_without_waiting_for_them(
    one_thread_worker: Any,
    owner: User,
    other_user: User,
    terms: TermsVersion,
    slow_environment: Environment,
) -> None:
    # Given a worker with one thread, when two people launch sessions whose servers are slow
    launched = [
        session_launch(
            user=_accepting(user, terms), environment_slug="ecmwf-dss", options={}
        ).session
        for user in (owner, other_user)
    ]

    # then both servers are asked for, the second once the first task gave the thread back,
    # and both are followed by the worker's start watcher (its progress line), still starting
    sessions = [wait_for(s.pk, _watched, timeout=60) for s in launched]
    for session in sessions:
        assert session.state == Session.State.STARTING
        assert _server_running(session)


def _watched(session: Session) -> bool:
    return bool(session.spawner_state) and session.message == "Waiting for JupyterLab to answer"


def test_a_server_that_does_not_answer_in_time_fails_with_the_reason_and_is_stopped(
    celery_worker: Any, settings: Any, accepted: User, slow_environment: Environment
) -> None:
    settings.SPAWN_TIMEOUT_SECONDS = 3
    # Given a launch whose server never answers
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    started = wait_for(session.pk, lambda s: bool(s.spawner_state), timeout=60)

    # When the spawn timeout passes, then the start fails, saying why, and its server is gone
    failed = wait_for(session.pk, in_state(Session.State.FAILED), timeout=60)
    assert failed.reason == Session.Reason.BACKEND_ERROR
    assert failed.message == (
        "The server did not answer within 3 seconds. Last news: Waiting for JupyterLab to answer"
    )
    assert failed.started_at is None and failed.ended_at is not None
    assert not _server_running(started)
    assert str(session.pk) not in {s.session_id for s in get_spawner().list_servers()}


def test_a_stop_that_comes_while_the_server_is_asked_for_still_stops_it(
    accepted: User, slow_environment: Environment, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an admitted session, and a stop that is asked and done (by its task) while the
    # back-end is being asked for the server: no state is saved yet, so the stop has nothing
    # to take down
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    assert sessions_admit() == 1
    start = LocalProcessSpawner.start

    def start_during_a_stop(self: LocalProcessSpawner, request: Any, progress: Any) -> Any:
        assert session_request_stop(request.session_id, Session.Reason.USER_STOPPED)
        session_finish_stop(request.session_id)
        return start(self, request, progress)

    monkeypatch.setattr(LocalProcessSpawner, "start", start_during_a_stop)

    # When the spawn task gets its server
    session_spawn(str(session.pk))

    # then it stops the server itself: the session ended as the user asked, no server is left
    session.refresh_from_db()
    assert (session.state, session.reason) == (Session.State.STOPPED, "user_stopped")
    assert session.spawner_state
    assert not _server_running(session)
    assert get_spawner().list_servers() == []

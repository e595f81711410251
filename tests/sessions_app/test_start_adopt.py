"""A worker crash or a database blip loses no start: a start whose spawn task was lost after it
asked for the server is adopted (the back-end's server found again, its state saved, followed to
running), the spawn task retries through a database outage and, run again, goes on where it
stopped; a start lost before its server existed is sent again once the process that ran its
task is gone (and never while it runs), or fails, saying so, when that cannot be told. Real
JupyterLab servers, real workers (killed with SIGKILL), a database that really refuses them.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from portal.celery import app
from sessions_app import spawn_owner, start_watch
from sessions_app.models import Environment, Session
from sessions_app.services import (
    RESEND_AFTER_SECONDS,
    session_launch,
    session_spawn,
    sessions_admit,
    sessions_expire_overdue,
)
from sessions_app.spawners import get_spawner
from sessions_app.spawners.local import LocalProcessSpawner
from sessions_app.start_watch import LOST_MESSAGE, sessions_starting_check
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import _make_user, after_workers, all_queues, database_clock
from tests.sessions_app.faults import WorkerProcess, database_outage
from tests.sessions_app.lifecycle import in_state, server_answers, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

State = Session.State


@pytest.fixture(autouse=True)
def _no_server_left() -> Iterator[None]:
    yield
    spawner = get_spawner()
    for server in spawner.list_servers():
        spawner.stop(server.state)


class TaskLost(BaseException):
    """What a worker that dies right after start() leaves: nothing after the call ran."""


@pytest.fixture
def lost_after_asking(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spawn tasks run in this test die once the back-end started their server."""
    start = LocalProcessSpawner.start

    def start_then_die(self: LocalProcessSpawner, request: Any, progress: Any) -> Any:
        start(self, request, progress)
        raise TaskLost

    monkeypatch.setattr(LocalProcessSpawner, "start", start_then_die)


def _launch_admitted(user: User) -> Session:
    session = session_launch(user=user, environment_slug="ecmwf-dss", options={}).session
    assert sessions_admit() >= 1
    return session


def _spawn_lost(session: Session) -> Session:
    with pytest.raises(TaskLost):
        session_spawn(str(session.pk))
    session.refresh_from_db()
    return session


def _servers() -> dict[str, int]:
    return {s.session_id: int(s.state["pid"]) for s in get_spawner().list_servers()}


def _watch_until(session_id: Any, states: tuple[str, ...], timeout: float = 90) -> Session:
    """Run start-watcher passes (as the worker's loop does) until the row is in ``states``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sessions_starting_check(get_spawner())
        session = Session.objects.get(pk=session_id)
        if session.state in states:
            return session
        time.sleep(0.1)
    raise AssertionError(f"session {session_id} is {session.state} ({session.message!r})")


def test_a_start_whose_task_died_after_asking_is_adopted_by_the_start_watcher(
    accepted: User, environment: Environment, lost_after_asking: None
) -> None:
    # Given a start whose spawn task died once its server was asked for: no state on the row
    session = _spawn_lost(_launch_admitted(accepted))
    assert session.state == State.STARTING and session.start_requested_at is not None
    assert session.spawner_state == {}
    [(server_id, pid)] = _servers().items()
    assert server_id == str(session.pk)

    # When the start watcher passes, past the time a spawn task has to save the state
    Session.objects.filter(pk=session.pk).update(
        start_requested_at=timezone.now() - timedelta(seconds=start_watch.ADOPT_AFTER_SECONDS)
    )
    running = _watch_until(session.pk, (State.RUNNING, State.FAILED))

    # then it found that server, saved its state and followed it to running: no second start
    assert running.state == State.RUNNING, running.message
    assert running.spawner_state["pid"] == pid
    assert server_answers(running.spawner_state)
    assert _servers() == {server_id: pid}


def test_a_start_is_left_to_its_task_for_a_grace_before_it_is_adopted(
    accepted: User, environment: Environment, lost_after_asking: None
) -> None:
    # Given a start whose server was asked for a moment ago, with no state on the row yet
    session = _spawn_lost(_launch_admitted(accepted))

    # When the start watcher passes within the grace
    sessions_starting_check(get_spawner())

    # then the row is left to its spawn task: no state written, nothing failed
    session.refresh_from_db()
    assert (session.state, session.spawner_state) == (State.STARTING, {})


def test_the_spawn_task_run_again_adopts_the_server_its_last_run_asked_for(
    accepted: User, environment: Environment, lost_after_asking: None, monkeypatch: Any
) -> None:
    # Given a start whose spawn task died once its server was asked for
    session = _spawn_lost(_launch_admitted(accepted))
    [pid] = _servers().values()
    monkeypatch.undo()  # the task runs normally again

    # When the task runs again (a retry, a delivery repeated)
    session_spawn(str(session.pk))

    # then it saved the state of that server at once, started no other, and the watcher
    # takes it to running
    session.refresh_from_db()
    assert session.spawner_state["pid"] == pid
    running = _watch_until(session.pk, (State.RUNNING, State.FAILED))
    assert running.state == State.RUNNING, running.message
    assert list(_servers().values()) == [pid]


def test_the_spawn_task_run_again_before_it_asked_goes_on_and_starts_one_server(
    accepted: User, environment: Environment
) -> None:
    # Given a start claimed (starting) by a spawn task that died before it asked for a server
    session = _launch_admitted(accepted)
    Session.objects.filter(pk=session.pk).update(state=State.STARTING)

    # When the task runs again, twice (a delivery repeated)
    session_spawn(str(session.pk))
    session_spawn(str(session.pk))

    # then the first run asked for the server and the second adopted it: one server
    session.refresh_from_db()
    assert session.start_requested_at is not None
    assert list(_servers()) == [str(session.pk)]
    assert session.spawner_state["pid"] == _servers()[str(session.pk)]


def test_a_start_lost_before_its_server_existed_fails_saying_so(
    accepted: User, environment: Environment
) -> None:
    # Given a start asked for long ago whose task died before the back-end made anything
    session = _launch_admitted(accepted)
    asked = timezone.now() - timedelta(seconds=start_watch.LOST_START_SECONDS + 1)
    Session.objects.filter(pk=session.pk).update(state=State.STARTING, start_requested_at=asked)

    # When the start watcher passes
    sessions_starting_check(get_spawner())

    # then the start failed with a message a person understands, and nothing runs
    session.refresh_from_db()
    assert (session.state, session.reason) == (State.FAILED, Session.Reason.BACKEND_ERROR)
    assert session.message == LOST_MESSAGE
    assert _servers() == {}


# --- real workers -------------------------------------------------------------------------------


@pytest.fixture
def worker_processes(tmp_path: Path, transactional_db: None) -> Iterator[list[WorkerProcess]]:
    """Worker processes the test starts (appended to the list); all stopped at the end."""
    all_queues(app)
    app.control.purge()
    since = database_clock()
    workers: list[WorkerProcess] = []
    try:
        yield workers
    finally:
        for worker in workers:
            worker.stop()
        app.control.purge()
        after_workers(since)


def _users(terms: TermsVersion, count: int) -> list[User]:
    users = []
    for n in range(count):
        user = _make_user(f"adopt{n}")
        terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="t")
        users.append(user)
    return users


def test_starts_in_flight_when_a_worker_is_killed_finish_in_the_next_worker(
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
    terms: TermsVersion,
    environment: Environment,
) -> None:
    # Given a worker that asked for three sessions' servers and was killed with SIGKILL before
    # any of its spawn tasks saved a state
    doomed = WorkerProcess(tmp_path, mode="hang-after-start")
    worker_processes.append(doomed)
    sessions = [
        session_launch(user=user, environment_slug="ecmwf-dss", options={}).session
        for user in _users(terms, 3)
    ]
    deadline = time.monotonic() + 120
    while len(doomed.asked()) < 3 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(doomed.asked()) == sorted(str(s.pk) for s in sessions)
    servers = _servers()
    doomed.kill()
    assert Session.objects.filter(state=State.STARTING, spawner_state={}).count() == 3

    # When another worker starts
    started = time.monotonic()
    worker_processes.append(WorkerProcess(tmp_path))
    finished = [wait_for(s.pk, in_state(State.RUNNING), timeout=120) for s in sessions]
    took = time.monotonic() - started

    # then it adopted the three servers and took them to running within seconds (its own
    # start-up included), with no second start of any
    assert took < 60, took
    assert {str(s.pk): s.spawner_state["pid"] for s in finished} == servers
    assert _servers() == servers
    assert all(server_answers(s.spawner_state) for s in finished)


def test_a_spawn_task_that_meets_a_stopped_database_retries_until_it_is_back(
    celery_worker: Any, accepted: User, environment: Environment
) -> None:
    with database_outage() as outage:
        # Given a database that refuses the workers
        outage.begin()
        # When a session is admitted meanwhile (its spawn task meets the outage)
        session = _launch_admitted(accepted)
        time.sleep(3)
        assert Session.objects.get(pk=session.pk).state == State.QUEUED
        # and the database comes back
        outage.end()

        # then the spawn task, retried, starts it: running, without any sweep
        running = wait_for(session.pk, in_state(State.RUNNING), timeout=120)
    assert server_answers(running.spawner_state)
    assert list(_servers()) == [str(session.pk)]


def test_a_start_whose_state_save_meets_a_stopped_database_still_runs(
    celery_worker: Any, accepted: User, environment: Environment, monkeypatch: Any
) -> None:
    with database_outage() as outage:
        # Given a database that stops refusing the workers for 5 s as soon as the back-end
        # started the server (the spawn task's save of the state meets it)
        start = LocalProcessSpawner.start

        def start_then_outage(self: LocalProcessSpawner, request: Any, progress: Any) -> Any:
            state = start(self, request, progress)
            outage.begin(seconds=5)
            return state

        monkeypatch.setattr(LocalProcessSpawner, "start", start_then_outage)

        # When a session is launched
        session = _launch_admitted(accepted)
        assert outage.began.wait(120)

        # then, once the database is back, it runs on the server asked for: no start lost
        running = wait_for(session.pk, in_state(State.RUNNING), timeout=120)
        assert outage.ended.is_set()
    assert server_answers(running.spawner_state)
    assert _servers() == {str(session.pk): running.spawner_state["pid"]}


# --- starts lost before their server existed: sent again if their owner is gone ----------------


def _dead_owner() -> str:
    """The owner name of a process of this machine that has ended."""
    process = subprocess.Popen(["true"])
    process.wait()
    return f"{spawn_owner.here().rsplit(':', 2)[0]}:{process.pid}:1.00"


def _wait_hanging(worker: WorkerProcess) -> str:
    """The owner name of ``worker``'s spawn task, once it hangs where its mode says."""
    deadline = time.monotonic() + 120
    while not worker.asked() and time.monotonic() < deadline:
        time.sleep(0.2)
    [owner] = worker.asked()
    return owner


@pytest.mark.parametrize(
    ("mode", "asked"),
    [("hang-in-prepare", False), ("hang-before-start", True)],
    ids=["killed-in-its-clone", "killed-after-claiming-the-start"],
)
def test_a_start_whose_worker_was_killed_before_its_server_existed_runs_in_the_next_worker(
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
    accepted: User,
    environment: Environment,
    mode: str,
    asked: bool,
) -> None:
    # Given a worker killed with SIGKILL while its spawn task prepared the session's storage
    # (or had claimed the start but not yet called the back-end): no server exists
    doomed = WorkerProcess(tmp_path, mode=mode)
    worker_processes.append(doomed)
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    owner = _wait_hanging(doomed)
    doomed.kill()
    session.refresh_from_db()
    assert (session.state, session.spawn_owner) == (State.STARTING, owner)
    assert (session.start_requested_at is not None) == asked
    assert _servers() == {}

    # When another worker starts (the killed task's message stays unacknowledged in Redis)
    worker_processes.append(WorkerProcess(tmp_path))

    # then it sends the start again and takes it to running: one server, not failed
    running = wait_for(session.pk, in_state(State.RUNNING, State.FAILED), timeout=120)
    assert running.state == State.RUNNING, running.message
    assert server_answers(running.spawner_state)
    assert _servers() == {str(session.pk): running.spawner_state["pid"]}


def test_a_start_whose_task_is_slow_but_alive_is_not_sent_again(
    worker_processes: list[WorkerProcess],
    tmp_path: Path,
    accepted: User,
    environment: Environment,
) -> None:
    # Given a spawn task that hangs in its storage step, in a worker that runs
    doomed = WorkerProcess(tmp_path, mode="hang-in-prepare")
    worker_processes.append(doomed)
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    owner = _wait_hanging(doomed)

    # When the start watcher passes, well past the time a lost start is looked for
    deadline = time.monotonic() + start_watch.ADOPT_AFTER_SECONDS + 3
    while time.monotonic() < deadline:
        sessions_starting_check(get_spawner())
        time.sleep(0.1)

    # then the start is left to its task: not sent again, not failed
    session.refresh_from_db()
    assert (session.state, session.spawn_owner) == (State.STARTING, owner)
    assert session.message != start_watch.AGAIN_MESSAGE

    # ... and once that worker is killed, the next look sends it again (the owner alone decided)
    doomed.kill()
    deadline = time.monotonic() + 2 * start_watch.ADOPT_RETRY_SECONDS + 3
    while session.spawn_owner and time.monotonic() < deadline:
        sessions_starting_check(get_spawner())
        session.refresh_from_db()
        time.sleep(0.1)
    assert (session.state, session.spawn_owner) == (State.STARTING, "")
    assert session.start_requested_at is None
    assert session.message == start_watch.AGAIN_MESSAGE


def test_a_lost_start_admitted_longer_ago_than_the_spawn_timeout_fails_instead(
    accepted: User, environment: Environment
) -> None:
    # Given a start whose owner is gone, admitted longer ago than a start may take
    session = _launch_admitted(accepted)
    long_ago = timezone.now() - timedelta(seconds=settings.SPAWN_TIMEOUT_SECONDS + 1)
    Session.objects.filter(pk=session.pk).update(
        state=State.STARTING, admitted_at=long_ago, updated_at=long_ago, spawn_owner=_dead_owner()
    )

    # When the start watcher passes
    sessions_starting_check(get_spawner())

    # then it fails, saying so, instead of starting again
    session.refresh_from_db()
    assert (session.state, session.message) == (State.FAILED, LOST_MESSAGE)


def test_a_start_sent_again_whose_send_was_lost_is_sent_by_the_sweep(
    celery_worker: Any, accepted: User, environment: Environment
) -> None:
    # Given a start sent again by the watcher whose task never reached a worker (the broker
    # was away): starting, not asked, no owner, untouched for a while
    session = _launch_admitted(accepted)
    Session.objects.filter(pk=session.pk).update(state=State.STARTING, spawn_owner="")
    app.control.purge()
    stale = timezone.now() - timedelta(seconds=RESEND_AFTER_SECONDS + 1)
    Session.objects.filter(pk=session.pk).update(updated_at=stale)

    # When the sweep runs
    sessions_expire_overdue()

    # then the start is sent and runs
    running = wait_for(session.pk, in_state(State.RUNNING, State.FAILED), timeout=120)
    assert running.state == State.RUNNING, running.message

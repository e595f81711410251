"""Deaths seen at once: the local back-end's ``wait_for_changes`` (a pidfd per server) names a
server as it ends, and the spawn worker's server watch (sessions_app/server_watch.py) ends its
session as failed (server_died) within seconds, saying in words what happened, with no local
path in what the person reads. Real sandboxed JupyterLab servers, a real worker, no beat.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from typing import Any

import psutil
import pytest
from celery.contrib.testing.worker import start_worker
from django.conf import settings
from django.contrib.auth.models import User

from portal.celery import app
from sessions_app.models import Environment, Session
from sessions_app.services import session_launch
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import ServerStatus, State
from sessions_app.spawners.local import LocalProcessSpawner
from tests.conftest import after_workers, all_queues, database_clock
from tests.sessions_app.lifecycle import in_state, wait_for
from tests.sessions_app.local_world import FIRST_TEST_PK, World, needs_isolation, session_python
from tests.sessions_app.spawner_contract import wait_for as wait_for_server

# The target is 2 s; the tests allow a margin for a loaded machine.
SEEN_WITHIN_SECONDS = 5.0


def _jupyter(state: State) -> psutil.Process:
    """The JupyterLab server of a local session: inside its sandbox, under the leader."""
    leader = psutil.Process(int(state["pid"]))
    for proc in leader.children(recursive=True):
        if "jupyter" in " ".join(proc.cmdline()):
            return proc
    raise AssertionError(f"no JupyterLab under {leader.cmdline()}")


def _gone_soon(processes: list[psutil.Process], timeout: float = 30) -> None:
    """Every one of ``processes`` ends within ``timeout`` (the stop's grace and its SIGKILL)."""
    _gone, alive = psutil.wait_procs(processes, timeout=timeout)
    assert alive == [], alive


def _wait_in_thread(
    spawner: LocalProcessSpawner, states: dict[str, State], timeout: float
) -> tuple[threading.Thread, dict[str, Any]]:
    out: dict[str, Any] = {}

    def run() -> None:
        out["changed"] = spawner.wait_for_changes(states, timeout)
        out["at"] = time.monotonic()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


@pytest.mark.integration
@needs_isolation
def test_wait_for_changes_names_the_session_whose_server_was_killed_at_once(
    world: World,
) -> None:
    # Given two running servers, and a wait on both
    a, b = world.start(FIRST_TEST_PK), world.start(FIRST_TEST_PK + 1)
    states = {"a": a.state, "b": b.state}
    thread, out = _wait_in_thread(world.spawner, states, timeout=60)
    time.sleep(0.5)
    assert "changed" not in out, "the wait returned while both servers ran"

    # When one JupyterLab is killed with SIGKILL
    killed = time.monotonic()
    _jupyter(a.state).send_signal(signal.SIGKILL)
    thread.join(60)

    # then the wait returns at once, naming that session only
    assert out["changed"] == {"a"}
    assert out["at"] - killed < SEEN_WITHIN_SECONDS
    assert world.spawner.poll(a.state).status == ServerStatus.GONE
    assert world.spawner.poll(b.state).status == ServerStatus.RUNNING


@pytest.mark.integration
@needs_isolation
def test_wait_for_changes_returns_nothing_while_the_servers_run(world: World) -> None:
    session = world.start(FIRST_TEST_PK)

    assert world.spawner.wait_for_changes({"a": session.state}, 0.5) == set()
    assert world.spawner.wait_for_changes({"a": session.state}, 0.5) == set()


def test_a_reused_pid_an_ended_one_and_none_are_named(tmp_path: Any) -> None:
    spawner = LocalProcessSpawner(tmp_path / "run", socket_dir=tmp_path / "s")
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    me = psutil.Process()
    states: dict[str, State] = {
        # this very process, but not the one the state was written for (another create time)
        "reused": {"pid": me.pid, "create_time": me.create_time() - 1000},
        "ended": {"pid": ended.pid, "create_time": time.time() - 1},
        "no leader": {"pid": 0, "create_time": 0.0},  # a start a lost worker left
        "alive": {"pid": me.pid, "create_time": me.create_time()},
    }

    started = time.monotonic()
    changed = spawner.wait_for_changes(states, 30)

    # Named at once, without waiting for the timeout; the live process is not
    assert changed == {"reused", "ended", "no leader"}
    assert time.monotonic() - started < SEEN_WITHIN_SECONDS
    # A state with no leader to watch is named after each wait, so that it is polled
    assert spawner.wait_for_changes({"no leader": states["no leader"]}, 0.1) == {"no leader"}
    assert spawner.wait_for_changes({"alive": states["alive"]}, 0.1) == set()


@pytest.mark.integration
@needs_isolation
def test_a_dead_servers_message_names_its_exit_code_and_log_without_local_paths(
    world: World,
) -> None:
    # Given a server that writes a local path and its own URL with a token, and exits with 3
    # (once its sandbox's network is up: a start fails if the sandbox ends before that)
    script = (
        "import sys, time; print('Cannot read /srv/portal/secret/kernel.json: no such kernel'); "
        "print('Running at http+unix://%2Frun%2Fjupyter%2Fx.sock/user/me/lab?token=s3cret'); "
        "sys.stdout.flush(); time.sleep(3); sys.exit(3)"
    )
    session = world.start(
        FIRST_TEST_PK, wait=False, backend_settings={"command": [session_python(), "-c", script]}
    )

    # When it is polled once it ended
    result = wait_for_server(world.spawner, session.state, ServerStatus.GONE, timeout=60)

    # then the message says what happened, and its log lines carry no local path nor token
    assert result.message.startswith("The server stopped unexpectedly: it exited with code 3.")
    assert "kernel.json: no such kernel" in result.message
    assert "/user/me/lab" in result.message
    for secret in ("/srv", "/run", "%2F", "s3cret", str(world.tmp_path)):
        assert secret not in result.message


@pytest.fixture
def killable(celery_worker: Any, accepted: User, environment: Environment) -> Session:
    """A running session of the worker's, a real JupyterLab in its sandbox."""
    session = session_launch(user=accepted, environment_slug="ecmwf-dss", options={}).session
    return wait_for(session.pk, in_state(Session.State.RUNNING))


def _no_local_path(message: str) -> None:
    for folder in (settings.LOCAL_SPAWNER_RUNTIME_DIR, settings.LOCAL_SPAWNER_SOCKET_DIR, "/tmp"):
        assert str(folder) not in message, message


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_killed_jupyterlab_shows_server_died_within_seconds(killable: Session) -> None:
    # When its JupyterLab is killed with SIGKILL (no beat runs: no reconcile sweep)
    leader = psutil.Process(int(killable.spawner_state["pid"]))
    processes = [leader, *leader.children(recursive=True)]
    killed = time.monotonic()
    _jupyter(killable.spawner_state).send_signal(signal.SIGKILL)

    # then the session fails as server_died within seconds, saying what happened in words
    failed = wait_for(killable.pk, in_state(Session.State.FAILED), timeout=60)
    seen = time.monotonic() - killed
    assert failed.reason == Session.Reason.SERVER_DIED
    assert failed.message == "The server stopped unexpectedly: it was killed by signal 9 (SIGKILL)."
    assert seen < SEEN_WITHIN_SECONDS, seen
    assert failed.url == "" and failed.ended_at is not None
    _no_local_path(failed.message)
    # and nothing of the session is left running
    _gone_soon(processes)
    assert get_spawner().list_servers() == []


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
def test_a_killed_sandbox_shows_server_died_within_seconds(killable: Session) -> None:
    # When the session's sandbox (the first process of the session) is killed with SIGKILL:
    # the JupyterLab in it runs on until the session is stopped
    leader = psutil.Process(int(killable.spawner_state["pid"]))
    processes = [leader, *leader.children(recursive=True)]
    killed = time.monotonic()
    leader.send_signal(signal.SIGKILL)

    # then the session fails as server_died within seconds, and nothing of it runs
    failed = wait_for(killable.pk, in_state(Session.State.FAILED), timeout=60)
    seen = time.monotonic() - killed
    assert failed.reason == Session.Reason.SERVER_DIED
    assert failed.message == "The server stopped unexpectedly: it was killed by signal 9 (SIGKILL)."
    assert seen < SEEN_WITHIN_SECONDS, seen
    _gone_soon(processes)
    assert get_spawner().list_servers() == []


def _watch_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in ("server-watch", "start-watch")]


@pytest.mark.integration
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    ("queue", "loops"), [("control", []), ("spawn", ["start-watch", "server-watch"])]
)
def test_only_a_worker_of_the_spawn_queue_runs_the_watch_loops(
    queue: str, loops: list[str]
) -> None:
    all_queues(app)
    since = database_clock()
    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=1,
            queues=[queue],
            hostname=f"{queue}@loops",
            use_eventloop=False,
            perform_ping_check=False,
            shutdown_timeout=30,
        ):
            assert sorted(_watch_threads()) == sorted(loops)
        assert _watch_threads() == []
    finally:
        all_queues(app)
        after_workers(since)

"""The broker away for a while, with sessions running (issue 13, deliverable 1): real Celery
worker and beat processes on a redis-server of the test's own, which the test stops and starts
again on the same port; real JupyterLab servers of the local back-end.

With ``acks_late`` every running session's deadline task sits unacknowledged in the worker, and
Celery 5.7 with kombu 5.7's Redis transport crashed the worker when it lost the broker with those
in hand (the workaround: portal/celery.py). Launches and stops asked meanwhile commit their rows
and are answered as usual (portal/broker.py); the sweeps send their tasks once the broker is back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from portal.celery import app
from sessions_app.models import Environment, Session
from sessions_app.services import (
    RESEND_AFTER_SECONDS,
    session_launch,
    session_request_stop,
    sessions_expire_overdue,
)
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.chaos.redis_server import answers_ping
from tests.conftest import _make_user, after_workers, database_clock, login_verified
from tests.portal.embedded import ROOT, free_fixed_port
from tests.sessions_app.lifecycle import in_state, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

OUTAGE_SECONDS = 10
# The sweeps (expiry and admission) run this often here; every recovery below waits for one.
SWEEP_SECONDS = 3
# Once the broker is back: the worker's reconnection (its retries are 2, 4, 6 s apart), a sweep,
# and a JupyterLab start on a busy machine.
RECOVERY_SECONDS = 90
START_SECONDS = 120


@dataclass
class PrivateRedis:
    """A redis-server on 127.0.0.1:``port`` with its own folder, no persistence: what it held
    is gone after a restart, as after a crash of a broker without an append-only file."""

    folder: Path
    port: int = field(default_factory=free_fixed_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.folder), "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--loglevel", "warning",
            ],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not answers_ping(self.port):
            assert self.process.poll() is None, "redis-server exited"
            assert time.monotonic() < deadline, "redis-server did not answer"
            time.sleep(0.05)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # if paused
            process.send_signal(signal.SIGTERM)
            process.wait(30)

    def pause(self, paused: bool = True) -> None:
        """Freeze it (SIGSTOP) or let it go on: a broker that hangs, its sockets open."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP if paused else signal.SIGCONT)


@dataclass
class CeleryProcesses:
    """``celery worker`` (every queue, threads) and ``celery beat`` as processes of their own,
    on the test database and the private broker; their output in ``folder``."""

    folder: Path
    env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None
    beat: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        celery = [sys.executable, "-m", "celery", "-A", "portal"]
        self.worker = self._run(
            "worker",
            [*celery, "worker", "--pool", "threads", "--concurrency", "8", "-n", "outage@%h",
             "-Q", "control,spawn,storage", "--loglevel", "INFO"],
        )  # fmt: skip
        self.beat = self._run(
            "beat",
            [*celery, "beat", "--loglevel", "INFO", "--schedule", str(self.folder / "schedule")],
        )
        deadline = time.monotonic() + 60
        while " ready." not in self.log("worker") or "beat: Starting" not in self.log("beat"):
            assert self.alive(), self.log("worker")[-3000:] + self.log("beat")[-3000:]
            assert time.monotonic() < deadline, "the worker or beat did not start"
            time.sleep(0.1)

    def _run(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        with open(self.folder / f"{name}.log", "wb") as out:
            return subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def log(self, name: str) -> str:
        path = self.folder / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def alive(self) -> bool:
        return all(p is not None and p.poll() is None for p in (self.worker, self.beat))

    def stop(self) -> None:
        for process in (self.beat, self.worker):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in (self.beat, self.worker):
            if process is None:
                continue
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _database_url() -> str:
    params = connection.settings_dict
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{params['NAME']}"


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[PrivateRedis]:
    """The private broker, and this process's sends going to it (the launches and stops that
    the test asks for, as the web would)."""
    folder = tmp_path / "redis"
    folder.mkdir()
    redis = PrivateRedis(folder)
    redis.start()
    previous = app.conf.broker_write_url
    _send_to(redis.url)
    try:
        yield redis
    finally:
        _send_to(previous)
        redis.stop()


def _send_to(url: str) -> None:
    """This process's app sends to (and purges, and inspects) the broker at ``url``. It holds
    its pools of connections and producers from the first use on, for the broker of the time:
    let go of, they are taken again from kombu's pools for this one (kombu keeps one per broker
    URL, so the earlier one is there again afterwards). Private attributes, not in the stubs."""
    app.conf.update(broker_write_url=url)
    app._pool = None  # type: ignore[attr-defined]
    app.amqp._producer_pool = None  # type: ignore[attr-defined]
    assert app.connection_for_write().as_uri(include_password=True) == url


@pytest.fixture
def celery_processes(
    broker: PrivateRedis, settings: Any, tmp_path: Path, transactional_db: None
) -> Iterator[CeleryProcesses]:
    since = database_clock()
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": broker.url,
        # This test's folders (tests/conftest.py, _isolated_storage): the test stops the
        # servers the worker started, and judges them, through the same spawner files.
        "STORAGE_HOME_ROOT": str(settings.STORAGE_HOME_ROOT),
        "STORAGE_SCRATCH_ROOT": str(settings.STORAGE_SCRATCH_ROOT),
        "LOCAL_SPAWNER_RUNTIME_DIR": str(settings.LOCAL_SPAWNER_RUNTIME_DIR),
        "NOTEBOOKS_LIBRARY_URL": "none",
        "SESSION_POOL_CPUS": str(settings.SESSION_POOL_CPUS),
        "SESSION_POOL_MEMORY_MB": str(settings.SESSION_POOL_MEMORY_MB),
        "SESSION_SWEEP_SECONDS": str(SWEEP_SECONDS),
    }
    processes = CeleryProcesses(tmp_path, env)
    try:
        processes.start()
        yield processes
    finally:
        processes.stop()
        after_workers(since)


def _user(name: str, terms: TermsVersion) -> User:
    user = _make_user(name)
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return user


def _running(user: User) -> Session:
    session = session_launch(user=user, environment_slug="ecmwf-dss", options={}).session
    return wait_for(session.pk, in_state(Session.State.RUNNING), timeout=START_SECONDS)


def _held_deadlines(processes: CeleryProcesses) -> int:
    return processes.log("worker").count("Task sessions_app.tasks.expire_session[")


def test_worker_and_beat_ride_out_a_broker_outage_with_sessions_running_and_work_on(
    celery_processes: CeleryProcesses,
    broker: PrivateRedis,
    terms: TermsVersion,
    environment: Environment,
) -> None:
    # Given two running sessions, whose deadline tasks the worker holds unacknowledged
    first, second = _running(_user("ann", terms)), _running(_user("ben", terms))
    deadline = time.monotonic() + 30
    while _held_deadlines(celery_processes) < 2:
        assert time.monotonic() < deadline, "the worker did not receive the deadline tasks"
        time.sleep(0.1)
    worker, beat = celery_processes.worker, celery_processes.beat

    # When the broker goes away for a while and comes back on the same port
    broker.stop()
    time.sleep(OUTAGE_SECONDS)
    alive_in_outage = celery_processes.alive()
    broker.start()

    # then the worker and beat lived through it, the same processes as before
    assert alive_in_outage, celery_processes.log("worker")[-3000:]
    assert celery_processes.worker is worker and celery_processes.beat is beat
    assert "Unrecoverable error" not in celery_processes.log("worker")
    # and they work on: a stop and a new launch are done, the other session runs on
    assert session_request_stop(str(first.pk), Session.Reason.USER_STOPPED)
    stopped = wait_for(first.pk, in_state(Session.State.STOPPED), timeout=RECOVERY_SECONDS)
    assert stopped.reason == Session.Reason.USER_STOPPED
    third = _running(_user("cas", terms))
    assert third.url
    assert Session.objects.get(pk=second.pk).state == Session.State.RUNNING
    assert celery_processes.alive()


def test_a_launch_and_a_stop_asked_while_the_broker_is_away_are_answered_and_done_after(
    celery_processes: CeleryProcesses,
    broker: PrivateRedis,
    terms: TermsVersion,
    environment: Environment,
) -> None:
    # Given a user whose session runs, and another without one
    leaving = _running(_user("dan", terms))
    leaver, arrival = APIClient(), APIClient()
    login_verified(leaver, User.objects.get(username="dan"))
    login_verified(arrival, _user("eve", terms))

    # When the broker is away, the one stops and the other launches
    broker.stop()
    stop = leaver.delete("/api/v1/session/")
    launch = arrival.post("/api/v1/session/", {"environment": "ecmwf-dss"}, format="json")

    # then both are answered as if the broker were there, their rows committed
    assert (stop.status_code, stop["Content-Type"]) == (202, "application/json"), stop.content
    assert (launch.status_code, launch["Content-Type"]) == (201, "application/json"), launch.content
    assert Session.objects.get(pk=leaving.pk).state == Session.State.STOPPING
    launched = Session.objects.get(pk=launch.json()["id"])
    assert launched.state == Session.State.QUEUED

    # and once the broker is back, the sweeps send what was not sent: both happen
    time.sleep(OUTAGE_SECONDS)
    broker.start()
    stopped = wait_for(leaving.pk, in_state(Session.State.STOPPED), timeout=RECOVERY_SECONDS)
    assert stopped.reason == Session.Reason.USER_STOPPED
    running = wait_for(launched.pk, in_state(Session.State.RUNNING), timeout=START_SECONDS)
    assert running.url
    assert celery_processes.alive()


def test_the_sweep_sends_again_a_spawn_and_a_stop_whose_sends_were_lost(
    celery_worker: Any, terms: TermsVersion, environment: Environment
) -> None:
    # Given a session admitted a little while ago and one stopping as long, whose tasks were
    # never sent (the broker was away when they were)
    old = timezone.now() - timedelta(seconds=RESEND_AFTER_SECONDS + 1)
    admitted = Session.objects.create(
        user=_user("gil", terms), environment=environment, created_at=old, admitted_at=old
    )
    stopping = Session.objects.create(
        user=_user("hal", terms),
        environment=environment,
        created_at=old,
        state=Session.State.STOPPING,
        reason=Session.Reason.USER_STOPPED,
    )
    Session.objects.filter(pk__in=[admitted.pk, stopping.pk]).update(updated_at=old)

    # When the sweep runs
    sessions_expire_overdue()

    # then it sent both again: the one starts, the other ends as its user asked
    wait_for(admitted.pk, in_state(Session.State.STARTING, Session.State.RUNNING), timeout=60)
    ended = wait_for(stopping.pk, in_state(Session.State.STOPPED), timeout=60)
    assert ended.reason == Session.Reason.USER_STOPPED


def test_a_launch_is_answered_while_the_broker_hangs(
    broker: PrivateRedis, terms: TermsVersion, environment: Environment
) -> None:
    # Given a user, and a broker that takes connections but answers nothing
    client = APIClient()
    login_verified(client, _user("ida", terms))
    broker.pause()
    try:
        # When they launch
        launch = client.post("/api/v1/session/", {"environment": "ecmwf-dss"}, format="json")
    finally:
        broker.pause(False)

    # then the launch is answered (the send gave up after the broker's socket timeout instead
    # of waiting for ever), its row committed for the admission pass
    assert launch.status_code == 201, launch.content
    assert Session.objects.get(pk=launch.json()["id"]).state == Session.State.QUEUED

"""The Celery queues (portal/settings.py, "Celery"): which task goes where, and that a stop or an
expiry is done by the control queue's worker while the spawn queue's worker is saturated by
starts on a slow back-end (the fake Kubernetes API holding every pod creation back).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.bootsteps import TERMINATE  # type: ignore[attr-defined]  # not in the stubs
from celery.contrib.testing.worker import start_worker
from celery.worker import WorkController
from celery.worker import state as worker_state
from django.conf import settings as django_settings
from django.utils import timezone

from portal.celery import app
from sessions_app import tasks
from sessions_app.models import Environment, Session
from sessions_app.services import session_launch, session_request_stop
from sessions_app.spawners import get_spawner
from terms_app.models import TermsVersion
from terms_app.services import terms_accept
from tests.conftest import _make_user, after_workers, all_queues, database_clock
from tests.kube.apiserver import FakeApiServer
from tests.kube.kubelet import Kubelet
from tests.sessions_app.lifecycle import in_state, wait_for

QUEUE_OF = {
    "sessions_app.tasks.stop_session": "control",
    "sessions_app.tasks.expire_session": "control",
    "sessions_app.tasks.admit_sessions": "control",
    "sessions_app.tasks.sweep_expire_overdue": "control",
    "sessions_app.tasks.spawn_session": "spawn",
    "sessions_app.tasks.sweep_reconcile": "spawn",
    "storage_app.tasks.sweep": "storage",
    "storage_app.tasks.scan_user": "storage",
    "storage_app.tasks.enforce_user": "storage",
}

# Threads of the spawn queue's worker in the test; starts beyond it wait in the broker.
SPAWN_THREADS = 2
# How long the fake API server holds each pod creation back: the slow back-end.
HOLD_SECONDS = 15.0
PODS = r"/namespaces/jupyter-sessions/pods$"


def _queue(task: str, options: dict[str, Any] | None = None) -> str:
    return str(app.amqp.router.route(dict(options or {}), task)["queue"].name)


def test_every_task_goes_to_its_queue() -> None:
    app.loader.import_default_modules()
    ours = {name for name in app.tasks if name.startswith(("sessions_app.", "storage_app."))}

    assert ours == set(QUEUE_OF)
    assert {name: _queue(name) for name in ours} == QUEUE_OF
    # What no route names (Celery's own tasks) is short: the control queue.
    assert _queue("celery.backend_cleanup") == "control"


def test_beat_entries_go_to_their_queues_and_keep_their_expiries() -> None:
    schedule: dict[str, dict[str, Any]] = django_settings.CELERY_BEAT_SCHEDULE
    for name, entry in schedule.items():
        assert _queue(entry["task"], entry["options"]) == QUEUE_OF[entry["task"]], name
        assert entry["options"]["expires"] > 0, name


def test_every_queue_has_a_worker_concurrency() -> None:
    queues = [queue.name for queue in django_settings.CELERY_TASK_QUEUES]

    assert queues == ["control", "spawn", "storage"]
    assert list(django_settings.WORKER_QUEUE_CONCURRENCY) == queues
    assert django_settings.CELERY_TASK_DEFAULT_QUEUE == "control"


@pytest.fixture
def kube_settings(settings: Any, kubeconfig: Path, environment: Environment) -> Iterator[None]:
    settings.SPAWNER = "kubernetes"
    settings.KUBE_CONFIG_FILE = str(kubeconfig)
    settings.KUBE_PUBLIC_URL = "https://jupyter.example.org"
    settings.KUBE_RETRIES = 0
    # The held creation is slow, not lost: the client waits for it.
    settings.KUBE_REQUEST_TIMEOUT_SECONDS = HOLD_SECONDS * 4
    settings.SPAWN_TIMEOUT_SECONDS = int(HOLD_SECONDS * 8)
    environment.image = "registry.example.org/jupyter/session:2026.11"
    environment.save()
    get_spawner.cache_clear()
    yield
    get_spawner.cache_clear()


@pytest.fixture
def queue_workers(kube_settings: None, transactional_db: None) -> Iterator[None]:
    """One worker per queue in this process, as runportal runs them (threads each)."""
    all_queues(app)
    since = database_clock()
    app.control.purge()
    try:
        with ExitStack() as stack:
            workers = [
                # Each worker narrows the app's selection of queues to its own before its
                # consumer starts; the consumers keep what they were started with. No event
                # loop: kombu's is one per process, and two workers' consumers on it starve
                # each other (runportal's workers are processes of their own).
                stack.enter_context(
                    start_worker(
                        app,
                        pool="threads",
                        concurrency=threads,
                        queues=[queue],
                        hostname=f"{queue}@pytest",
                        use_eventloop=False,
                        perform_ping_check=False,
                        shutdown_timeout=HOLD_SECONDS * 3,
                    )
                )
                for queue, threads in (("spawn", SPAWN_THREADS), ("control", 2), ("storage", 1))
            ]
            try:
                yield
            finally:
                _stop_all(workers)
    finally:
        all_queues(app)
        after_workers(since)


def _stop_all(workers: list[WorkController]) -> None:
    """Stop the workers together. start_worker stops its own by raising a flag every worker of
    the process reads, and lowers it once its own has stopped: one at a time, the next worker
    may never see it."""
    worker_state.should_terminate = 0  # type: ignore[assignment]  # None or an exit code
    deadline = time.monotonic() + HOLD_SECONDS * 3
    while not all(worker.blueprint and worker.blueprint.state == TERMINATE for worker in workers):
        assert time.monotonic() < deadline, "the workers did not stop"
        time.sleep(0.1)


def _launch(name: str, terms: TermsVersion) -> str:
    user = _make_user(name)
    terms_accept(user=user, version=terms.version, ip_address="127.0.0.1", user_agent="pytest")
    return str(session_launch(user=user, environment_slug="ecmwf-dss", options={}).session.pk)


@pytest.mark.integration
def test_a_stop_and_an_expiry_are_done_while_starts_hold_every_spawn_thread(
    queue_workers: None, terms: TermsVersion, kube_server: FakeApiServer, kubelet: Kubelet
) -> None:
    # Given two running sessions
    kubelet.auto(delay=0.05)
    stopped, expired = _launch("ann", terms), _launch("ben", terms)
    for session_id in (stopped, expired):
        wait_for(session_id, in_state(Session.State.RUNNING), timeout=60)
    # and a burst of starts on a back-end that takes HOLD_SECONDS to create each pod: more
    # starts than the spawn worker has threads, so all of them are busy and one start waits
    kube_server.delay_next("POST", PODS, HOLD_SECONDS, times=SPAWN_THREADS + 1, before=True)
    created = len(kube_server.requests_to("POST", PODS))
    burst = [_launch(f"burst{index}", terms) for index in range(SPAWN_THREADS + 1)]
    wait_for(
        burst[0],
        lambda _: len(kube_server.requests_to("POST", PODS)) == created + SPAWN_THREADS,
        timeout=60,
    )

    # When the owner of one running session stops it, and the other's deadline task comes due
    assert session_request_stop(stopped, Session.Reason.USER_STOPPED)
    Session.objects.filter(pk=expired).update(expires_at=timezone.now() - timedelta(seconds=1))
    tasks.expire_session.apply_async(args=(expired,))

    # then both end while the spawn worker's threads are all still waiting for the back-end:
    # no pod of the burst exists yet, and the third start has not even asked for its pod
    assert wait_for(stopped, in_state(Session.State.STOPPED), timeout=HOLD_SECONDS).reason == (
        Session.Reason.USER_STOPPED
    )
    assert wait_for(expired, in_state(Session.State.EXPIRED), timeout=HOLD_SECONDS).reason == (
        Session.Reason.TIME_LIMIT
    )
    assert kube_server.objects("pods", "jupyter-sessions") == []
    assert len(kube_server.requests_to("POST", PODS)) == created + SPAWN_THREADS
    states = set(Session.objects.filter(pk__in=burst).values_list("state", flat=True))
    assert states <= {Session.State.QUEUED, Session.State.STARTING}

    # and nothing is lost: once the back-end answers, every start of the burst runs
    for session_id in burst:
        wait_for(session_id, in_state(Session.State.RUNNING), timeout=HOLD_SECONDS * 4)

"""The start watcher: one look at every starting server per tick, instead of a thread per start.

The spawn task asks the back-end to start a server and returns (``services.session_spawn``).
From then on each worker process that consumes the spawn queue follows every starting session
in one loop (``sessions_app.worker_steps``), which calls :func:`sessions_starting_check` and then
waits: ``Spawner.wait_many`` while something starts (``SPAWN_POLL_SECONDS`` on one machine; on
Kubernetes a watch of the portal's pods that returns as soon as one changes), else until a
spawn task of the process says it started one (:func:`wake`) or ``IDLE_SECONDS`` pass.

A pass does for each session what the spawn task's own loop used to do:

- the server answers: running, ``expires_at`` computed as before, and the deadline task
  enqueued in the same transaction;
- the server is gone: failed, with the back-end's reason;
- ``SPAWN_TIMEOUT_SECONDS`` passed since the start was asked (``start_requested_at``): failed,
  with the last progress line;
- otherwise a new progress line, if the back-end has one.

A failed start's server is stopped after the row failed, and only by the pass that failed it;
a stop the back-end refuses leaves a server of no active session, which the reconcile sweep
stops. A session that moved to stopping is no longer read here: its stop task stops the server,
whose state was saved before any pass could see the row. Several watchers (several spawn
workers) may look at one session: every change is a conditional UPDATE, so one of them makes it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from sessions_app.models import Session
from sessions_app.spawners.base import PollResult, ServerStatus, Spawner, SpawnerError
from sessions_app.spawners.base import State as ServerState
from sessions_app.transitions import enqueue, fail_start, progress, transition

log = logging.getLogger(__name__)

State = Session.State
Reason = Session.Reason

# The most sessions one pass looks at, oldest start first (so timeouts are never starved): a
# pass over them is one query and, on one machine, a socket check each (microseconds).
WATCH_BATCH = 500
# With nothing starting, a pass runs this often (a start asked by another process is seen
# within it; this process's own spawn tasks wake the loop at once).
IDLE_SECONDS = 1.0

_wake = threading.Event()


class _Starting(NamedTuple):
    """What a pass reads of one starting session."""

    key: str
    message: str
    spawner_state: ServerState
    start_requested_at: datetime
    max_duration_minutes: int


_COLUMNS = (
    "pk",
    "message",
    "spawner_state",
    "start_requested_at",
    "environment__max_duration_minutes",
)


def wake() -> None:
    """Look again now: a spawn task of this process just saved a new server's state."""
    _wake.set()


def idle(seconds: float = IDLE_SECONDS) -> None:
    """Wait until :func:`wake` or ``seconds``: the pause of a loop with nothing starting."""
    _wake.wait(seconds)


def sessions_starting_check(spawner: Spawner) -> dict[str, ServerState]:
    """One pass over the starting sessions whose start was asked (see the module's docstring).

    Returns the states of the servers still starting, by session id: what the caller waits on.
    """
    _wake.clear()  # before the read: a start saved after it wakes the next pause
    # Only the columns a pass reads, as tuples: the ORM's model rows cost most of a pass.
    rows = [
        _Starting(str(pk), *rest)
        for pk, *rest in Session.objects.filter(
            state=State.STARTING, start_requested_at__isnull=False
        )
        .order_by("start_requested_at")
        .values_list(*_COLUMNS)[:WATCH_BATCH]
    ]
    states = {row.key: row.spawner_state for row in rows if row.spawner_state}
    results = spawner.poll_many(states) if states else {}
    timeout = timedelta(seconds=settings.SPAWN_TIMEOUT_SECONDS)
    now = timezone.now()
    watching: dict[str, ServerState] = {}
    for row in rows:
        key = row.key
        timed_out = now - row.start_requested_at > timeout
        result = results.get(key)
        if result is None:
            # Its spawn task is still in start(): the task stops the server it gets, once it
            # finds the row no longer starting.
            if timed_out:
                fail_start(key, Reason.BACKEND_ERROR, _timeout_message(row.message))
            continue
        if result.status == ServerStatus.RUNNING:
            _promote(row, result)
        elif result.status == ServerStatus.GONE:
            _fail(spawner, key, states[key], f"The server could not be started: {result.message}")
        elif timed_out:
            _fail(spawner, key, states[key], _timeout_message(result.message or row.message))
        else:
            if result.message and result.message != row.message:
                progress(key, result.message)
            watching[key] = states[key]
    return watching


def _promote(row: _Starting, result: PollResult) -> None:
    key = row.key
    now = timezone.now()
    # From the back-end's own start where it keeps one (a pod's deadline counts from its
    # start), so that the countdown shows when the back-end will end it. Bounded both ways: a
    # back-end clock behind ours must not end the session early.
    clock_start = min(max(result.started_at or now, row.start_requested_at), now)
    expires_at = clock_start + timedelta(minutes=row.max_duration_minutes)
    with transaction.atomic():
        if transition(
            key,
            [State.STARTING],
            State.RUNNING,
            updated_at=now,
            started_at=now,
            expires_at=expires_at,
            url=result.url,
            message="",
        ):
            enqueue("expire_session", key, eta=expires_at)
    # Not promoted: a stop moved it to stopping meanwhile, and its task stops the server.


def _fail(spawner: Spawner, key: str, state: ServerState, message: str) -> None:
    # The server goes first, so that a session reported failed has nothing left behind (a
    # stop asked meanwhile stops it again: stopping twice is harmless).
    try:
        spawner.stop(state)
    except SpawnerError as exc:
        log.warning("start watch: session %s: stop failed (reconcile retries): %s", key, exc)
    fail_start(key, Reason.BACKEND_ERROR, message)


def _timeout_message(news: str) -> str:
    last = f" Last news: {news}" if news else ""
    return f"The server did not answer within {settings.SPAWN_TIMEOUT_SECONDS} seconds.{last}"

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

A start whose spawn task was lost after asking (its worker killed, or a database error before
the state was saved) has no state on its row: once ``ADOPT_AFTER_SECONDS`` passed, a pass asks
the back-end for the session's server (``Spawner.find``), saves the state it finds and follows
it as any other (:func:`session_adopt`, which the spawn task also calls when it runs again).
No server, and the process that ran the spawn task (``spawn_owner``) provably gone: the task was
lost before the server existed (in its clone, or between claiming the start and the back-end's
first file), and the start is sent again (:func:`_start_again`): the row goes back to "claimed,
not asked" and a new spawn task goes on with it, as a retry does. This also covers starts not
asked yet (``start_requested_at`` empty), read by the same query once their row is
``ADOPT_AFTER_SECONDS`` old. Only a dead owner's start is sent again: a task that is only slow
would race a second start of the same session for one cgroup, socket folder and state file (one
pod name), each taking the other's down. Where the owner cannot be told dead (a worker on
another machine or pod: Kubernetes), or is alive (start() runs, or the task ended without a
server), a start asked ``LOST_START_SECONDS`` ago with no server fails, saying so; failed, a
slow task stops the server it gets (it finds the row no longer starting), and the person
launches again at once; one not asked is left to the reconcile sweep. A start admitted more than
``SPAWN_TIMEOUT_SECONDS`` ago fails instead of starting again, so a start that kills its worker
each time ends.

A failed start's server is stopped after the row failed, and only by the pass that failed it;
a stop the back-end refuses leaves a server of no active session, which the reconcile sweep
stops. A session that moved to stopping is no longer read here: its stop task stops the server,
whose state was saved before any pass could see the row. Several watchers (several spawn
workers) may look at one session: every change is a conditional UPDATE, so one of them makes it.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta
from math import inf
from typing import NamedTuple

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from sessions_app import events, spawn_owner
from sessions_app.history import server_log_tail
from sessions_app.models import Session
from sessions_app.spawners.base import PollResult, ServerStatus, Spawner, SpawnerError
from sessions_app.spawners.base import State as ServerState
from sessions_app.transitions import RETRYING, enqueue, fail_start, progress, transition

log = logging.getLogger(__name__)

State = Session.State
Reason = Session.Reason

# The most sessions one pass looks at, oldest start first (so timeouts are never starved): a
# pass over them is one query and, on one machine, a socket check each (microseconds).
WATCH_BATCH = 500
# A start with no state on its row is left to its spawn task this long (start() returns within
# this on both back-ends), then the back-end is asked for its server (at most every
# ADOPT_RETRY_SECONDS for one session: a Kubernetes LIST each) ...
ADOPT_AFTER_SECONDS = 2.0
ADOPT_RETRY_SECONDS = 1.0
# ... and with no server found this long after the start was asked, the start was lost.
LOST_START_SECONDS = 30.0
LOST_MESSAGE = (
    "The start was interrupted before your server was created (a portal worker stopped). "
    "Please launch again."
)
AGAIN_MESSAGE = "Starting again after an interruption."
# With nothing starting, a pass runs this often (a start asked by another process is seen
# within it; this process's own spawn tasks wake the loop at once).
IDLE_SECONDS = 1.0

_wake = threading.Event()
# When a pass last asked the back-end for each unadopted session's server (monotonic seconds).
_looked: dict[str, float] = {}


class _Starting(NamedTuple):
    """What a pass reads of one starting session."""

    key: str
    message: str
    spawner_state: ServerState
    start_requested_at: datetime | None  # None: claimed, not asked yet (its owner clones)
    max_duration_minutes: int
    spawn_owner: str
    admitted_at: datetime | None
    updated_at: datetime


_COLUMNS = (
    "pk",
    "message",
    "spawner_state",
    "start_requested_at",
    "environment__max_duration_minutes",
    "spawn_owner",
    "admitted_at",
    "updated_at",
)


def wake() -> None:
    """Look again now: a spawn task of this process just saved a new server's state."""
    _wake.set()


def idle(seconds: float = IDLE_SECONDS) -> None:
    """Wait until :func:`wake` or ``seconds``: the pause of a loop with nothing starting."""
    _wake.wait(seconds)


def sessions_starting_check(spawner: Spawner) -> dict[str, ServerState]:
    """One pass over the starting sessions (see the module's docstring).

    Returns the states of the servers still starting, by session id: what the caller waits on.
    """
    _wake.clear()  # before the read: a start saved after it wakes the next pause
    # Only the columns a pass reads, as tuples: the ORM's model rows cost most of a pass.
    now = timezone.now()
    # Starts not asked yet only once old enough to be lost, and only with an owner to check
    # (a row sent again waits for its task, or the sweep's send; one waiting for its task's
    # retry after a transient error, for that retry): few rows, read last.
    unasked = Q(
        start_requested_at__isnull=True,
        updated_at__lt=now - timedelta(seconds=ADOPT_AFTER_SECONDS),
    ) & ~Q(spawn_owner__in=("", RETRYING))
    rows = [
        _Starting(str(pk), *rest)
        for pk, *rest in Session.objects.filter(
            Q(start_requested_at__isnull=False) | unasked, state=State.STARTING
        )
        .order_by(F("start_requested_at").asc(nulls_last=True))
        .values_list(*_COLUMNS)[:WATCH_BATCH]
    ]
    states = {row.key: row.spawner_state for row in rows if row.spawner_state}
    states.update(_adopt_lost(spawner, [row for row in rows if not row.spawner_state], now))
    results = spawner.poll_many(states) if states else {}
    timeout = timedelta(seconds=settings.SPAWN_TIMEOUT_SECONDS)
    watching: dict[str, ServerState] = {}
    for row in rows:
        key = row.key
        timed_out = row.start_requested_at is not None and now - row.start_requested_at > timeout
        result = results.get(key)
        if result is None:
            # Its spawn task is still in start(), or was lost before the server existed
            # (_adopt_lost failed those): the task stops the server it gets, once it finds
            # the row no longer starting.
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


def session_adopt(spawner: Spawner, session_id: str) -> ServerState | None:
    """Save the state of a starting session's server found by the back-end on a row that has
    none (its spawn task was lost after asking), and return it; None if the back-end runs no
    server for it or the row no longer wants one.

    The row's state is written only if it is still empty: the spawn task's own save (the
    complete state, made after ``start()`` returned) is never replaced by an earlier one.
    """
    state = spawner.find(session_id)
    if not state:
        return None
    now = timezone.now()
    saved = Session.objects.filter(pk=session_id, state=State.STARTING, spawner_state={}).update(
        spawner_state=state,
        start_requested_at=Coalesce(F("start_requested_at"), Value(now)),
        updated_at=now,
    )
    if saved:
        log.info("start watch: session %s: adopted its server", session_id)
        return state
    return (
        Session.objects.filter(pk=session_id, state=State.STARTING)
        .values_list("spawner_state", flat=True)
        .first()
    ) or None


def _adopt_lost(spawner: Spawner, rows: list[_Starting], now: datetime) -> dict[str, ServerState]:
    """The states of the servers found for ``rows`` (starts with no state on the row); sends
    again those with none whose owner is gone, and fails those with none that are
    ``LOST_START_SECONDS`` old whose owner cannot be told gone."""
    adopted: dict[str, ServerState] = {}
    clock = time.monotonic()
    for key in _looked.keys() - {row.key for row in rows}:
        del _looked[key]
    for row in rows:
        age = (now - (row.start_requested_at or row.updated_at)).total_seconds()
        if age < ADOPT_AFTER_SECONDS or clock < _looked.get(row.key, -inf) + ADOPT_RETRY_SECONDS:
            continue
        _looked[row.key] = clock
        try:
            state = session_adopt(spawner, row.key)
        except SpawnerError as exc:
            # The back-end did not answer: not "no server"; asked again next time.
            log.warning("start watch: session %s: cannot look for its server: %s", row.key, exc)
            continue
        if state:
            adopted[row.key] = state
            continue
        if spawn_owner.alive(row.spawn_owner) is False:
            _start_again(row, now)
        elif row.start_requested_at is not None and age > min(
            LOST_START_SECONDS, settings.SPAWN_TIMEOUT_SECONDS
        ):
            fail_start(row.key, Reason.BACKEND_ERROR, LOST_MESSAGE)
    return adopted


def _start_again(row: _Starting, now: datetime) -> None:
    """Send again a start whose spawn task died before its server existed (its owner is
    gone): the row as a task that claimed it but did not ask leaves it, and a new task."""
    timeout = timedelta(seconds=settings.SPAWN_TIMEOUT_SECONDS)
    if row.admitted_at is None or now - row.admitted_at > timeout:
        fail_start(row.key, Reason.BACKEND_ERROR, LOST_MESSAGE)
        return
    with transaction.atomic():
        # Only as this pass read it: a task that went on meanwhile owns it now.
        again = Session.objects.filter(
            pk=row.key, state=State.STARTING, spawner_state={}, spawn_owner=row.spawn_owner
        ).update(start_requested_at=None, spawn_owner="", message=AGAIN_MESSAGE, updated_at=now)
        if again:
            events.session_changed(row.key)
            enqueue("spawn_session", row.key)
    if again:
        log.warning("start watch: session %s: its spawn task was lost; sent again", row.key)


def _promote(row: _Starting, result: PollResult) -> None:
    key = row.key
    now = timezone.now()
    # From the back-end's own start where it keeps one (a pod's deadline counts from its
    # start), so that the countdown shows when the back-end will end it. Bounded both ways: a
    # back-end clock behind ours must not end the session early.
    clock_start = min(max(result.started_at or now, row.start_requested_at or now), now)
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
    # The log's last lines are read before the stop removes the log (the history shows them).
    # The server goes first, so that a session reported failed has nothing left behind (a
    # stop asked meanwhile stops it again: stopping twice is harmless).
    tail = server_log_tail(spawner, state)
    try:
        spawner.stop(state)
    except SpawnerError as exc:
        log.warning("start watch: session %s: stop failed (reconcile retries): %s", key, exc)
    fail_start(key, Reason.BACKEND_ERROR, message, log_tail=tail)


def _timeout_message(news: str) -> str:
    last = f" Last news: {news}" if news else ""
    return f"The server did not answer within {settings.SPAWN_TIMEOUT_SECONDS} seconds.{last}"

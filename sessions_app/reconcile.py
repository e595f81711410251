"""Make the database and the back-end agree (the reconcile sweep), and end a session whose
server is gone (:func:`session_server_gone`, shared with the server watch,
:mod:`sessions_app.server_watch`, which sees deaths at once; this sweep is the backstop)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sessions_app.history import server_log_tail
from sessions_app.models import Session
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import (
    PollResult,
    RunningServer,
    ServerStatus,
    Spawner,
    SpawnerError,
)
from sessions_app.spawners.base import State as ServerState
from sessions_app.transitions import END_MESSAGES, transition

log = logging.getLogger(__name__)

State = Session.State
Reason = Session.Reason

# How many rows one query reads: a batch of running sessions is one query and a back-end call
# each (a process check, or an HTTP request), so a batch takes seconds at most; a pass reads
# batch after batch until it has seen every running session.
SWEEP_BATCH = 200


def sessions_reconcile() -> dict[str, int]:
    """Make the database and the back-end agree.

    Running sessions whose server died end as failed with the reason (or as expired, when the
    back-end ended them at their deadline); sessions stuck in starting past the spawn timeout
    (no spawn worker followed them) fail; servers that belong to no active session are stopped.
    """
    spawner = get_spawner()
    died = expired = 0
    for key, state in _running():
        result = spawner.poll(state)
        if result.status == ServerStatus.GONE:
            ended = session_server_gone(spawner, key, state, result)
            died += ended == "died"
            expired += ended == "expired"
    stuck = _fail_stuck_starts(spawner)
    orphans = _stop_orphans(spawner)
    return {"died": died, "expired": expired, "stuck": stuck, "orphans": orphans}


def session_server_gone(
    spawner: Spawner, session_id: str, state: ServerState, result: PollResult
) -> str:
    """End a running session whose server the back-end found gone, then stop what is left of
    it. Returns ``"died"`` (failed: server_died), ``"expired"`` (the back-end ended it at its
    deadline), or ``""`` when the row was no longer running.

    The row first: the person learns at once (a sandbox killed from outside leaves a
    JupyterLab that takes the stop's grace to shut down), and only the pass that ended it
    stops the rest; a session being stopped meanwhile had its server taken down on purpose,
    and its stop task is removing what is left. A stop the back-end refuses now leaves
    processes of an ended session, which the orphan pass stops.
    """
    now = timezone.now()
    # Before the stop, which removes the log: the history shows its last lines.
    tail = server_log_tail(spawner, state)
    if result.deadline_exceeded:
        # The back-end ended it at its deadline (a pod's activeDeadlineSeconds, the local
        # server's own timer), perhaps while no worker ran: the time limit, not a failure.
        outcome = "expired"
        ended = transition(
            session_id,
            [State.RUNNING],
            State.EXPIRED,
            updated_at=now,
            reason=Reason.TIME_LIMIT,
            message=END_MESSAGES[Reason.TIME_LIMIT],
            log_tail=tail,
            url="",
            ended_at=now,
        )
    else:
        outcome = "died"
        ended = transition(
            session_id,
            [State.RUNNING],
            State.FAILED,
            updated_at=now,
            reason=Reason.SERVER_DIED,
            message=result.message or "The server stopped unexpectedly.",
            log_tail=tail,
            url="",
            ended_at=now,
        )
    if not ended:
        return ""
    log.info("session %s: its server is gone (%s): %s", session_id, outcome, result.message)
    try:
        spawner.stop(state)
    except SpawnerError as exc:
        log.warning("session %s: stopping what is left of its server failed: %s", session_id, exc)
    return outcome


def _running() -> Iterator[tuple[str, ServerState]]:
    """Every running session with its server's state, ``SWEEP_BATCH`` rows to a query, in key
    order (a row that ends meanwhile is simply not read again)."""
    after = None
    while True:
        rows = Session.objects.filter(state=State.RUNNING).order_by("pk")
        if after is not None:
            rows = rows.filter(pk__gt=after)
        batch = list(rows.values_list("pk", "spawner_state")[:SWEEP_BATCH])
        for pk, state in batch:
            yield str(pk), state
        if len(batch) < SWEEP_BATCH:
            return
        after = batch[-1][0]


def _fail_stuck_starts(spawner: Spawner) -> int:
    # The start watcher fails a start at SPAWN_TIMEOUT_SECONDS and adopts one whose task was
    # lost after asking; this is for starts it does not follow (no spawn worker), and for one
    # lost before asking (no start_requested_at: updated_at then).
    stuck_before = timezone.now() - timedelta(seconds=settings.SPAWN_TIMEOUT_SECONDS + 30)
    stuck = 0
    for session in Session.objects.filter(
        Q(start_requested_at__lt=stuck_before)
        | Q(start_requested_at__isnull=True, updated_at__lt=stuck_before),
        state=State.STARTING,
    )[:SWEEP_BATCH]:
        tail = server_log_tail(spawner, session.spawner_state)
        if session.spawner_state:
            try:
                spawner.stop(session.spawner_state)
            except SpawnerError as exc:
                log.warning("reconcile: session %s: stop failed: %s", session.pk, exc)
                continue
        now = timezone.now()
        if transition(
            str(session.pk),
            [State.STARTING],
            State.FAILED,
            updated_at=now,
            reason=Reason.BACKEND_ERROR,
            message="Start-up was interrupted; please launch again.",
            log_tail=tail,
            ended_at=now,
        ):
            stuck += 1
    return stuck


def _stop_orphans(spawner: Spawner) -> int:
    # The servers first, then the rows: a server listed already had its row active before it
    # was started (the row is claimed first), so a start that happens in between cannot pass
    # for an orphan, as it could with the rows read first.
    servers = list(spawner.list_servers())
    active = {
        str(pk)
        for pk in Session.objects.filter(state__in=Session.ACTIVE_STATES).values_list(
            "pk", flat=True
        )
    }
    return stop_orphans(spawner, servers, active)


def stop_orphans(spawner: Spawner, servers: Iterable[RunningServer], active: set[str]) -> int:
    """Stop the ``servers`` whose session is not in ``active``, each only after its row is read
    again just before: the set may be older than the server. Returns how many were stopped."""
    orphans = 0
    for server in servers:
        key = _session_key(server.session_id)
        if key in active or (key and _is_active(key)):
            continue
        log.warning("stopping the server of unknown session %s", server.session_id)
        try:
            spawner.stop(server.state)
        except SpawnerError as exc:
            log.warning("reconcile: orphan %s: stop failed: %s", server.session_id, exc)
            continue
        orphans += 1
    return orphans


def _session_key(session_id: str) -> str:
    """The session's primary key as the database writes it, or "" if it cannot be one."""
    try:
        return str(uuid.UUID(session_id))
    except ValueError:
        return ""


def _is_active(key: str) -> bool:
    return Session.objects.filter(pk=key, state__in=Session.ACTIVE_STATES).exists()

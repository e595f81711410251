"""Make the database and the back-end agree (the reconcile sweep)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from sessions_app.models import Session
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import ServerStatus, SpawnerError
from sessions_app.transitions import END_MESSAGES, transition

log = logging.getLogger(__name__)

State = Session.State
Reason = Session.Reason

# How many rows one pass handles: each costs a back-end call (a process check or an HTTP
# request), so a batch stays well under the sweep interval; the rest waits for the next pass.
SWEEP_BATCH = 200


def sessions_reconcile() -> dict[str, int]:
    """Make the database and the back-end agree.

    Running sessions whose server died end as failed with the reason (or as expired, when the
    back-end ended them at their deadline); sessions stuck in
    starting past the spawn timeout (their worker was lost) fail; servers that belong to no
    active session are stopped.
    """
    spawner = get_spawner()
    now = timezone.now()
    died = expired = 0
    for session in Session.objects.filter(state=State.RUNNING)[:SWEEP_BATCH]:
        result = spawner.poll(session.spawner_state)
        if result.status != ServerStatus.GONE:
            continue
        try:
            spawner.stop(session.spawner_state)
        except SpawnerError as exc:
            # One server the back-end will not stop now must not hold up the rest.
            log.warning("reconcile: session %s: stop failed: %s", session.pk, exc)
            continue
        if result.deadline_exceeded:
            # The back-end ended it at its deadline (a pod's activeDeadlineSeconds), perhaps
            # while no worker ran: that is the time limit, not a failure.
            expired += transition(
                str(session.pk),
                [State.RUNNING],
                State.EXPIRED,
                updated_at=now,
                reason=Reason.TIME_LIMIT,
                message=END_MESSAGES[Reason.TIME_LIMIT],
                url="",
                ended_at=now,
            )
        else:
            died += transition(
                str(session.pk),
                [State.RUNNING],
                State.FAILED,
                updated_at=now,
                reason=Reason.SERVER_DIED,
                message=f"The server stopped on its own: {result.message}",
                url="",
                ended_at=now,
            )

    # The start watcher fails a start at SPAWN_TIMEOUT_SECONDS; this is for starts it does
    # not follow (no spawn worker, or one lost before the start was asked: updated_at then).
    stuck_before = now - timedelta(seconds=settings.SPAWN_TIMEOUT_SECONDS + 30)
    stuck = 0
    for session in Session.objects.filter(
        Q(start_requested_at__lt=stuck_before)
        | Q(start_requested_at__isnull=True, updated_at__lt=stuck_before),
        state=State.STARTING,
    )[:SWEEP_BATCH]:
        if session.spawner_state:
            try:
                spawner.stop(session.spawner_state)
            except SpawnerError as exc:
                log.warning("reconcile: session %s: stop failed: %s", session.pk, exc)
                continue
        if transition(
            str(session.pk),
            [State.STARTING],
            State.FAILED,
            updated_at=now,
            reason=Reason.BACKEND_ERROR,
            message="Start-up was interrupted; please launch again.",
            ended_at=now,
        ):
            stuck += 1

    active = {
        str(pk)
        for pk in Session.objects.filter(state__in=Session.ACTIVE_STATES).values_list(
            "pk", flat=True
        )
    }
    orphans = 0
    for server in spawner.list_servers():
        if server.session_id not in active:
            log.warning("stopping server of unknown session %s", server.session_id)
            try:
                spawner.stop(server.state)
            except SpawnerError as exc:
                log.warning("reconcile: orphan %s: stop failed: %s", server.session_id, exc)
                continue
            orphans += 1
    return {"died": died, "expired": expired, "stuck": stuck, "orphans": orphans}

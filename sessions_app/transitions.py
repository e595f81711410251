"""The steps every session write is made of: a conditional state change, a start that fails,
a progress line, and tasks sent once the transaction commits.

Shared by :mod:`sessions_app.services`, :mod:`sessions_app.start_watch` and
:mod:`sessions_app.reconcile`; nothing here calls a back-end.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from portal import broker
from sessions_app import events
from sessions_app.models import Session

State = Session.State
Reason = Session.Reason

END_MESSAGES = {
    Reason.USER_STOPPED: "You stopped the session.",
    Reason.TIME_LIMIT: "The session reached its time limit and was stopped.",
    Reason.STAFF_STOPPED: "The session was stopped by staff.",
    Reason.SUSPENDED: "The session was stopped because the account is suspended.",
}


def enqueue(task_name: str, session_id: str, eta: datetime | None = None) -> None:
    """Send a task for the session once this transaction commits. A broker that is away does
    not fail the caller (the row is committed, and the request answers as if sent): the expiry
    sweep sends it again from the row (``services.sessions_expire_overdue``)."""
    # Imported here: tasks import this module.
    from sessions_app import tasks

    task = getattr(tasks, task_name)
    transaction.on_commit(lambda: broker.send(task, [session_id], eta=eta))


def admit_soon() -> None:
    """Ask for an admission pass once this transaction commits (a launch queued a session, or
    a session let go of its resources). Lost if the broker is away: beat's admission pass
    (``sessions-admit``) runs anyway."""
    from sessions_app import tasks

    transaction.on_commit(lambda: broker.send(tasks.admit_sessions))


ENDED = (State.STOPPED, State.EXPIRED, State.FAILED)


def transition(session_id: str, from_states: list[str], to_state: str, **fields: Any) -> bool:
    """Move a session to ``to_state`` if it is in one of ``from_states``; False if it was not.

    A session that ends lets go of its share of the pool: an admission pass follows. Clients
    waiting on the session are woken (and those in the queue, when it leaves the queue)."""
    fields.setdefault("updated_at", timezone.now())
    moved = bool(
        Session.objects.filter(pk=session_id, state__in=from_states).update(
            state=to_state, **fields
        )
    )
    if moved:
        events.session_changed(session_id)
        if State.QUEUED in from_states:
            events.queue_changed()
        if to_state in ENDED:
            admit_soon()
    return moved


def fail_start(session_id: str, reason: str, message: str) -> bool:
    # Only a session still starting fails: one that moved to stopping meanwhile had its server
    # stopped on purpose (that is why it is gone) and ends as the stop says.
    return transition(
        session_id,
        [State.STARTING],
        State.FAILED,
        reason=reason,
        message=message,
        url="",
        ended_at=timezone.now(),
    )


def progress(session_id: str, message: str) -> None:
    """A new progress line for a starting session (the session page shows it)."""
    if Session.objects.filter(pk=session_id, state=State.STARTING).update(
        message=message, updated_at=timezone.now()
    ):
        events.session_changed(session_id)

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
from sessions_app.signals import session_ended, session_started

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
    waiting on the session are woken (and those in the queue, when it leaves the queue), and
    other apps told when it starts running or ends (:mod:`sessions_app.signals`)."""
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
        _announce(session_id, to_state)
    return moved


def _announce(session_id: str, to_state: str) -> None:
    signal = (
        session_started
        if to_state == State.RUNNING
        else session_ended
        if to_state in ENDED
        else None
    )
    # The owner is read only when someone listens: one primary-key read.
    if signal is None or not signal.has_listeners(Session):
        return
    user_id = Session.objects.filter(pk=session_id).values_list("user_id", flat=True).first()
    if user_id is not None:
        signal.send(Session, session_id=str(session_id), user_id=user_id, state=to_state)


def fail_start(session_id: str, reason: str, message: str, log_tail: str = "") -> bool:
    """Fail a starting session with why (``message``) and, when its server had begun, the
    last lines of its log that its owner may read (``history.safe_log_tail``)."""
    # Only a session still starting fails: one that moved to stopping meanwhile had its server
    # stopped on purpose (that is why it is gone) and ends as the stop says.
    return transition(
        session_id,
        [State.STARTING],
        State.FAILED,
        reason=reason,
        message=message,
        log_tail=log_tail,
        url="",
        ended_at=timezone.now(),
    )


def progress(session_id: str, message: str) -> None:
    """A new progress line for a starting session (the session page shows it)."""
    if Session.objects.filter(pk=session_id, state=State.STARTING).update(
        message=message, updated_at=timezone.now()
    ):
        events.session_changed(session_id)


# --- A start that failed for a moment (the back-end busy or away) -----------------------------

#: ``spawn_owner`` of a start waiting for its task's retry: no process owns it meanwhile, any
#: run of the task takes it (``services.session_spawn``), the start watcher neither adopts nor
#: sends it again, and the expiry sweep does not send it (it has an owner).
RETRYING = "retrying"
#: The retries' backoff: 1, 2, 4 … seconds, at most this much between two tries.
RETRY_BACKOFF_SECONDS = 1
RETRY_BACKOFF_MAX_SECONDS = 30


class StartRetry(Exception):
    """Raised by ``services.session_spawn`` for a transient back-end error worth another try:
    the spawn task sends itself again ``countdown`` seconds later (Celery's retry)."""

    def __init__(self, countdown: int, error: Exception) -> None:
        super().__init__(f"retry in {countdown}s: {error}")
        self.countdown = countdown
        self.error = error


def start_retry_or_fail(session_id: str, owner: str, attempt: int, error: str) -> int | None:
    """After a transient error of the back-end's start (``owner``'s run asked, and the
    back-end cleaned up): the seconds until the next try, with the row back to "claimed, not
    asked" and waiting for it (its progress line says so); or None: the start failed with
    ``error``, because the next try would come ``SPAWN_TIMEOUT_SECONDS`` or more after the
    session was admitted (the clock a start sent again also counts on), or the row is no
    longer this run's (stopped meanwhile).

    Exponential backoff: ``RETRY_BACKOFF_SECONDS``, doubled per ``attempt`` (the task's
    retries so far), at most ``RETRY_BACKOFF_MAX_SECONDS``.
    """
    from celery.utils.time import get_exponential_backoff_interval
    from django.conf import settings

    countdown = int(
        get_exponential_backoff_interval(
            RETRY_BACKOFF_SECONDS, attempt, RETRY_BACKOFF_MAX_SECONDS, full_jitter=False
        )
    )
    now = timezone.now()
    admitted = (
        Session.objects.filter(pk=session_id).values_list("admitted_at", flat=True).first()
    ) or now
    left = (admitted - now).total_seconds() + settings.SPAWN_TIMEOUT_SECONDS
    if countdown >= left:
        fail_start(session_id, Reason.BACKEND_ERROR, f"The server could not be started: {error}")
        return None
    waiting = Session.objects.filter(
        pk=session_id, state=State.STARTING, spawner_state={}, spawn_owner=owner
    ).update(
        start_requested_at=None,
        spawn_owner=RETRYING,
        message=f"{error} Trying again in {countdown} s (try {attempt + 2}).",
        updated_at=now,
    )
    if not waiting:
        return None
    events.session_changed(session_id)
    return countdown

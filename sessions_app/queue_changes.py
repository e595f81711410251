"""Staff's changes to the queue: move a waiting session up or down, take one out.

Both lock the waiting row (an admission pass that wants it waits), record who did it in the
admin's history of the session, and ask for an admission pass.
"""

from __future__ import annotations

import logging
import uuid

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from portal.errors import ServiceError
from sessions_app import events
from sessions_app.models import Session
from sessions_app.services import session_request_stop
from sessions_app.transitions import admit_soon

log = logging.getLogger(__name__)

State = Session.State
Reason = Session.Reason

QUEUE_MOVE_MAX_STEPS = 10
QUEUE_BOOST_LIMIT = 100


class QueueError(ServiceError):
    """A queue change that is refused."""

    statuses = {"not_queued": 404}


def _queued_locked(session_id: str) -> Session:
    """The waiting session, its row locked until the transaction ends: an admission pass that
    wants it waits, then finds it as this transaction left it."""
    try:
        uuid.UUID(str(session_id))
    except ValueError:
        session = None
    else:
        session = (
            Session.objects.select_for_update()
            .filter(pk=session_id, state=State.QUEUED, admitted_at__isnull=True)
            .first()
        )
    if session is None:
        raise QueueError(f"Session {session_id} is not waiting in the queue.", "not_queued")
    return session


def _record_queue_change(session: Session, by: AbstractBaseUser, message: str) -> None:
    # The admin's history of the session: staff see who changed the queue, from the admin
    # or the API alike.
    LogEntry.objects.log_actions(
        user_id=by.pk,
        queryset=[session],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )
    log.info("queue: %s: %s (by %s)", session.pk, message, by.get_username())


def queue_move(session_id: str, steps: int, by: AbstractBaseUser) -> Session:
    """Move a waiting session ``steps`` priority steps forward (negative: back) for staff
    member ``by``: its ``queue_boost`` changes by ``steps``, each step worth
    ``QUEUE_AGING_MINUTES`` of waiting. Asks for an admission pass, since the new order may
    let it (or another) start now. Raises :class:`QueueError` (``invalid_steps``,
    ``not_queued``, ``boost_limit``)."""
    if (
        isinstance(steps, bool)
        or not isinstance(steps, int)
        or steps == 0
        or abs(steps) > QUEUE_MOVE_MAX_STEPS
    ):
        raise QueueError(
            f"Steps must be a whole number from -{QUEUE_MOVE_MAX_STEPS} to "
            f"{QUEUE_MOVE_MAX_STEPS}, other than 0.",
            "invalid_steps",
        )
    with transaction.atomic():
        session = _queued_locked(session_id)
        before = session.queue_boost
        after = before + steps
        if abs(after) > QUEUE_BOOST_LIMIT:
            raise QueueError(
                f"The boost would be {after}; it stays within ±{QUEUE_BOOST_LIMIT}.",
                "boost_limit",
            )
        session.queue_boost = after
        session.save(update_fields=["queue_boost", "updated_at"])
        events.queue_changed()
        _record_queue_change(
            session,
            by,
            f"Moved {'up' if steps > 0 else 'down'} in the queue by {abs(steps)} "
            f"(boost {before:+d} → {after:+d}).",
        )
        admit_soon()
    return session


def queue_remove(session_id: str, by: AbstractBaseUser) -> Session:
    """End a waiting session as stopped by staff member ``by``; those behind it move up (an
    admission pass follows, as for every session that ends). Raises :class:`QueueError`
    (``not_queued``) for a session that is not waiting, an admitted one included: it is
    starting, and staff stop it as any other."""
    with transaction.atomic():
        session = _queued_locked(session_id)
        session_request_stop(str(session.pk), Reason.STAFF_STOPPED)
        session.refresh_from_db()
        _record_queue_change(session, by, "Removed from the queue.")
    return session

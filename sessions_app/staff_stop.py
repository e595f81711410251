"""Staff stop a user's session (the staff API; the admin's stop action may use it too).

The stop itself is the owner's (``services.session_request_stop``), with the reason "stopped by
staff"; what is added here is the record of who did it, in the admin's history of the session,
as for the queue's changes.
"""

from __future__ import annotations

import logging

from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction

from portal.errors import ServiceError
from sessions_app.models import Session
from sessions_app.services import session_request_stop

log = logging.getLogger(__name__)


class StaffStopError(ServiceError):
    """A stop that is refused."""

    statuses = {"session_not_found": 404, "session_ended": 409}


def session_stop_by_staff(session_id: str, by: AbstractBaseUser) -> Session:
    """Stop a session as staff member ``by``: a queued one ends at once, a starting or running
    one moves to stopping while its server goes down, one already stopping is left to finish.
    Returns the session as it is then. Raises :class:`StaffStopError`: ``session_not_found``,
    ``session_ended`` (nothing to stop)."""
    with transaction.atomic():
        # Locked: two staff members stopping it at once record one stop, not two.
        session = Session.objects.select_for_update().filter(pk=session_id).first()
        if session is None:
            raise StaffStopError(f"There is no session {session_id}.", "session_not_found")
        if not session.is_active:
            raise StaffStopError(
                f"Session {session_id} has already ended ({session.state}).", "session_ended"
            )
        if session_request_stop(str(session.pk), Session.Reason.STAFF_STOPPED):
            LogEntry.objects.log_actions(
                user_id=by.pk,
                queryset=[session],
                action_flag=CHANGE,
                change_message="Stopped by staff.",
                single_object=True,
            )
            log.info("session %s: stopped by %s", session.pk, by.get_username())
    return Session.objects.select_related("user", "environment").get(pk=session.pk)

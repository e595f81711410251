"""Sessions' answer to other apps' events: a suspension stops the user's active session.

The signal is suspension_app's (:mod:`suspension_app.signals`): that app does not know this
one, so the apps' services form no import cycle (docs/architecture.md, "Layering").
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.dispatch import receiver

from sessions_app.models import Session
from sessions_app.selectors import session_active_for
from sessions_app.services import session_request_stop
from suspension_app.signals import suspension_imposed


@receiver(suspension_imposed, dispatch_uid="sessions_stop_on_suspension")
def session_stop_on_suspension(sender: Any, user_id: int, **kwargs: Any) -> None:
    """Ask the user's active session to stop (reason ``suspended``).

    Sent after the suspension committed. ``session_request_stop`` is a conditional UPDATE, so a
    session that ended meanwhile is left alone.
    """
    user = get_user_model().objects.filter(pk=user_id).first()
    if user is None:
        return
    session = session_active_for(user)
    if session is not None:
        session_request_stop(str(session.id), Session.Reason.SUSPENDED)

"""E-mail to a user about their suspension and reinstatement.

Called from ``transaction.on_commit`` by the services: a message goes out only for a change
that was committed, and a mail server that fails cannot undo the change.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.core.mail import send_mail
from django.template.loader import render_to_string

from suspension_app.models import Suspension

log = logging.getLogger(__name__)


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _send(suspension: Suspension, template: str, context: dict[str, object]) -> None:
    recipient = suspension.user.email
    if not recipient:
        log.warning(
            "suspension %s: user %s has no e-mail address; not sent: %s",
            suspension.pk,
            suspension.user.get_username(),
            template,
        )
        return
    context = {"username": suspension.user.get_username(), **context}
    subject = render_to_string(f"suspension_app/email/{template}_subject.txt", context)
    body = render_to_string(f"suspension_app/email/{template}_body.txt", context)
    # A subject is one line: a template's trailing newline must not become a header break.
    send_mail(" ".join(subject.split()), body, settings.DEFAULT_FROM_EMAIL, [recipient])


def mail_suspended(suspension_id: int) -> None:
    """Tell the user why, since when, and how to appeal."""
    suspension = Suspension.objects.select_related("user").filter(pk=suspension_id).first()
    if suspension is None:
        return
    _send(
        suspension,
        "suspended",
        {
            "reason": suspension.reason,
            "since": format_utc(suspension.created_at),
            "appeal_contact": settings.SUSPENSION_APPEAL_CONTACT,
        },
    )


def mail_reinstated(suspension_id: int) -> None:
    """Tell the user that and when they were reinstated; the investigation note stays internal."""
    suspension = Suspension.objects.select_related("user").filter(pk=suspension_id).first()
    if suspension is None or suspension.lifted_at is None:
        return
    _send(
        suspension,
        "reinstated",
        {
            "since": format_utc(suspension.created_at),
            "lifted_at": format_utc(suspension.lifted_at),
        },
    )

"""E-mail to a user about their private storage: the warnings before its deletion, and the
notice that it was deleted.

Called from ``transaction.on_commit`` by the retention service, after the mark that makes each
message go once has committed. A mail server that fails is logged: the warning is on the
launcher page too, and the deletion is in the storage page's history.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from django.conf import settings
from django.core.mail import send_mail
from django.template.defaultfilters import filesizeformat
from django.template.loader import render_to_string

from storage_app.models import StorageAccount

log = logging.getLogger(__name__)


def _format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _send(account_id: int, template: str, context: dict[str, object]) -> None:
    account = StorageAccount.objects.select_related("user").filter(pk=account_id).first()
    if account is None:
        return
    user = account.user
    if not user.email:
        log.warning(
            "storage: user %s has no e-mail address; not sent: %s", user.get_username(), template
        )
        return
    context = {
        "username": user.get_username(),
        "retention_days": settings.STORAGE_RETENTION_DAYS,
        **context,
    }
    subject = render_to_string(f"storage_app/email/{template}_subject.txt", context)
    body = render_to_string(f"storage_app/email/{template}_body.txt", context)
    try:
        # A subject is one line: a template's trailing newline must not become a header break.
        send_mail(" ".join(subject.split()), body, settings.DEFAULT_FROM_EMAIL, [user.email])
    except Exception:
        log.exception("storage: could not send %s to %s", template, user.get_username())


def mail_retention_warning(account_id: int, delete_after: datetime, days: int) -> None:
    """The private storage will be deleted at ``delete_after`` (``days`` from now) unless the
    user starts a session before then."""
    _send(
        account_id,
        "retention_warning",
        {"delete_after": _format_utc(delete_after), "days": days},
    )


def mail_private_deleted(account_id: int, deleted_at: datetime, freed_bytes: int) -> None:
    """The private storage was deleted because no session was started for the period."""
    _send(
        account_id,
        "private_deleted",
        {
            "deleted_at": _format_utc(deleted_at),
            "size": str(filesizeformat(freed_bytes)).replace("\xa0", " "),
        },
    )

"""The storage account of a user: created on first use, its retention deadline renewed when the
user starts a session.

One :class:`~storage_app.models.StorageAccount` row per user holds the quota overrides, the
retention exemption and deadline (``delete_after``), the warnings sent for it, and the latest
measurement of each area (written by :mod:`storage_app.usage`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from storage_app.models import StorageAccount


def _new_account_fields(now: datetime) -> dict[str, Any]:
    # An account that never started a session counts from its creation (the first session,
    # sweep or scan that saw the user): an installation that starts tracking never deletes a
    # home on its first sweep, and every home gets the full period and its warnings.
    return {
        "created_at": now,
        "delete_after": now + timedelta(days=settings.STORAGE_RETENTION_DAYS),
    }


def storage_account_for(
    user: AbstractBaseUser, now: datetime | None = None, *, dry_run: bool = False
) -> StorageAccount:
    """The user's storage account, created on first use.

    In a dry run nothing is written: the existing row, or an unsaved one as it would be made.
    """
    now = now or timezone.now()
    if dry_run:
        existing = StorageAccount.objects.filter(user_id=user.pk).first()
        return existing or StorageAccount(user_id=user.pk, **_new_account_fields(now))
    account, _ = StorageAccount.objects.get_or_create(
        user_id=user.pk, defaults=_new_account_fields(now)
    )
    return account


def storage_session_started(user: AbstractBaseUser, now: datetime | None = None) -> None:
    """The user started a session: the private storage is kept another retention period.

    A new deadline: its warnings are sent again when it nears; a deletion notice no longer
    applies. Only a database write, meant for the launch's own transaction.
    """
    now = now or timezone.now()
    fields = {
        "last_session_at": now,
        "delete_after": now + timedelta(days=settings.STORAGE_RETENTION_DAYS),
        "retention_warnings_sent": [],
        "private_deleted_at": None,
    }
    StorageAccount.objects.update_or_create(
        user_id=user.pk, defaults=fields, create_defaults={**fields, "created_at": now}
    )

"""One full storage pass over every user (or one): what the beat runs every
``STORAGE_SWEEP_MINUTES`` and ``manage.py storage_sweep`` runs in the foreground.

Per user: measure the private storage, enforce the scratch quota, apply the retention; then,
for all users only, the shared scratch maximum. The pass holds the scratch lease throughout.
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from storage_app.accounts import storage_account_for
from storage_app.lease import Lease, StorageBusy, scratch_lease
from storage_app.reports import SweepReport, UserSweep
from storage_app.retention import private_retention_apply
from storage_app.scratch import enforce_shared_maximum

# A module-level name of its own: the sweep tests replace it to make one user fail.
from storage_app.scratch import enforce_user_quota as _enforce_user
from storage_app.usage import measure_private

log = logging.getLogger(__name__)


class UnknownUser(Exception):
    """``storage_sweep(username=…)`` names nobody."""


def storage_sweep(*, dry_run: bool = False, username: str | None = None) -> SweepReport:
    """One full pass: measure every user's storage, enforce each scratch quota, apply the
    retention of private storage, then (for all users only) the shared scratch maximum.

    A user whose step fails is logged and passed over; the pass goes on. Raises
    :class:`UnknownUser` for an unknown ``username`` and
    :class:`~storage_app.lease.StorageBusy` when another cleanup holds the scratch lease.
    """
    now = timezone.now()
    users = get_user_model().objects.order_by("pk")
    if username is not None:
        users = users.filter(username=username)
        if not users.exists():
            raise UnknownUser(f"There is no user {username!r}.")
    report = SweepReport(dry_run=dry_run, started_at=now)
    # One pass holds the lease throughout: a staff "cleanup now" waits for it to finish. The
    # pass is one task (not batches that re-queue): its cost is scans at du speed, and the
    # lease plus the beat entry's expiry keep passes from piling up.
    with scratch_lease(dry_run) as lease:
        for user in users.iterator():
            report.users.append(_sweep_user(user, now=now, dry_run=dry_run, lease=lease))
            if lease is not None:
                lease.renew()
        if username is None:
            report.shared = enforce_shared_maximum(dry_run=dry_run, now=now, lease=lease)
    report.finished_at = timezone.now()
    return report


def _sweep_user(
    user: AbstractBaseUser, *, now: datetime, dry_run: bool, lease: Lease | None
) -> UserSweep:
    result = UserSweep(user.get_username())
    try:
        account = storage_account_for(user, now, dry_run=dry_run)
        result.private_quota = account.private_quota
        result.private = measure_private(account, now, dry_run)
        result.scratch = _enforce_user(user, account, dry_run=dry_run, now=now, lease=lease)
        if account.pk is not None:
            account.refresh_from_db()  # the measurements just written
        result.retention = private_retention_apply(user, account, now=now, dry_run=dry_run)
    except StorageBusy:
        raise
    except Exception as exc:
        log.exception("storage sweep: %s failed", result.username)
        result.error = f"{type(exc).__name__}: {exc}"
    return result

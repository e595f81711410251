"""Reads of storage: what the storage page, the API and the warnings on other pages show.

Database only: the numbers are the latest measurements the sweep (or a staff scan) stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Count, Max, QuerySet, Sum
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from storage_app.models import RemovalRecord, StorageAccount

# How long a scratch cleanup is mentioned on the launcher and session pages.
RECENT_CLEANUP_DAYS = 7


def _size(count: int) -> str:
    return str(filesizeformat(count)).replace("\xa0", " ")


def _date(moment: datetime) -> str:
    return f"{moment:%d %B %Y, %H:%M} UTC"


@dataclass(frozen=True)
class AreaUsage:
    """One area's latest measurement against its quota; ``used_bytes`` None: never measured."""

    used_bytes: int | None
    files: int | None
    quota_bytes: int
    measured_at: datetime | None

    @property
    def over_quota(self) -> bool:
        return self.used_bytes is not None and self.used_bytes > self.quota_bytes

    @property
    def percent(self) -> int:
        """Share of the quota used, 0–100 (a bar cannot go further)."""
        if not self.used_bytes:
            return 0
        if self.quota_bytes <= 0:
            return 100
        return min(100, round(self.used_bytes * 100 / self.quota_bytes))


@dataclass(frozen=True)
class StorageOverview:
    private: AreaUsage
    scratch: AreaUsage
    delete_after: datetime | None  # None: no deadline yet (no storage account)
    last_session_at: datetime | None
    retention_exempt: bool
    private_deleted_at: datetime | None
    retention_days: int


def _account(user: AbstractBaseUser | AnonymousUser) -> StorageAccount | None:
    if not user.is_authenticated:
        return None
    return StorageAccount.objects.filter(user_id=user.pk).first()


def storage_overview(user: AbstractBaseUser) -> StorageOverview:
    """The user's usage against their quotas and the retention of their private storage."""
    account = _account(user)
    if account is None:
        account = StorageAccount(user_id=user.pk)  # the defaults, nothing measured yet
        delete_after = None
    else:
        delete_after = account.delete_after
    return StorageOverview(
        private=AreaUsage(
            account.private_bytes,
            account.private_files,
            account.private_quota,
            account.private_measured_at,
        ),
        scratch=AreaUsage(
            account.scratch_bytes,
            account.scratch_files,
            account.scratch_quota,
            account.scratch_measured_at,
        ),
        delete_after=delete_after,
        last_session_at=account.last_session_at,
        retention_exempt=account.retention_exempt,
        private_deleted_at=account.private_deleted_at,
        retention_days=settings.STORAGE_RETENTION_DAYS,
    )


def storage_removals(user: AbstractBaseUser) -> QuerySet[RemovalRecord]:
    """Every file (or private storage) a cleanup removed of this user's, newest first."""
    # The primary key breaks ties (one cleanup records many files at one moment), so pages of
    # the history never shift.
    return RemovalRecord.objects.filter(user_id=user.pk).order_by("-removed_at", "-pk")


def storage_warnings_for(
    user: AbstractBaseUser | AnonymousUser, now: datetime | None = None
) -> list[str]:
    """What the launcher and session pages warn about: private storage over its quota, its
    deletion coming within the warning window (or done), a recent scratch cleanup."""
    account = _account(user)
    if account is None:
        return []
    now = now or timezone.now()
    warnings = []
    if account.private_bytes is not None and account.private_bytes > account.private_quota:
        warnings.append(
            f"Your private storage uses {_size(account.private_bytes)}, over its quota of "
            f"{_size(account.private_quota)}. Please remove files you no longer need."
        )
    window = max(settings.STORAGE_RETENTION_WARNING_DAYS, default=0)
    if account.private_deleted_at is not None:
        warnings.append(
            f"Your private storage was deleted on {_date(account.private_deleted_at)}: no "
            f"session was started for {settings.STORAGE_RETENTION_DAYS} days."
        )
    elif (
        not account.retention_exempt
        and account.private_bytes != 0  # 0: measured, and there is no home to lose
        and now >= account.delete_after - timedelta(days=window)
    ):
        warnings.append(
            f"Your private storage will be deleted after {_date(account.delete_after)} unless "
            "you start a session before then."
        )
    recent = RemovalRecord.objects.filter(
        user_id=account.user_id,
        area=RemovalRecord.Area.SCRATCH,
        removed_at__gte=now - timedelta(days=RECENT_CLEANUP_DAYS),
    ).aggregate(files=Count("pk"), size=Sum("size"), last=Max("removed_at"))
    if recent["files"]:
        warnings.append(
            f"Scratch cleanups removed {recent['files']} of your files "
            f"({_size(recent['size'] or 0)}) in the last {RECENT_CLEANUP_DAYS} days, the latest "
            f"on {_date(recent['last'])}. The storage page lists them."
        )
    return warnings

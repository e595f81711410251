"""Measuring storage: how much each area of a user holds, kept on the storage account.

An area is a user's private storage (the home) or scratch folder; its measurement is a scan
(:func:`storage_app.fs_scan.scan_tree`: allocated bytes, a hard-linked file counted once, never
following a link). The cleanups scan through :func:`scan_area` too, and save what they measured
with :func:`save_measurement`.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from storage_app.accounts import storage_account_for
from storage_app.fs_scan import scan_tree
from storage_app.fs_types import ScanResult
from storage_app.layout import home_path, scratch_path
from storage_app.models import StorageAccount


@dataclass(frozen=True)
class AreaScan:
    """One area's measurement; ``exists`` False when the user has no such folder."""

    bytes_used: int
    files: int
    errors: int
    exists: bool

    @classmethod
    def of(cls, scan: ScanResult | None) -> AreaScan:
        if scan is None:
            return cls(0, 0, 0, exists=False)
        return cls(scan.bytes_used, scan.files, scan.errors, exists=True)


@dataclass(frozen=True)
class UsageScan:
    private: AreaScan
    scratch: AreaScan
    measured_at: datetime


def is_folder(path: Path) -> bool:
    """A real folder (not a symlink to one) is there."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def scan_area(root: Path, **kwargs: Any) -> ScanResult | None:
    """The scan of an area (``kwargs`` as for ``scan_tree``), or None when the user has no such
    folder (nothing to count)."""
    if not is_folder(root):
        return None
    return scan_tree(root, **kwargs)


def save_measurement(account: StorageAccount, area: str, usage: AreaScan, now: datetime) -> None:
    """Keep ``area``'s (``private`` or ``scratch``) measurement on the account."""
    # Only the measurement's columns: a staff member may be editing the quotas meanwhile.
    StorageAccount.objects.filter(pk=account.pk).update(
        **{
            f"{area}_bytes": usage.bytes_used,
            f"{area}_files": usage.files,
            f"{area}_errors": usage.errors,
            f"{area}_measured_at": now,
        }
    )


def measure_private(account: StorageAccount, now: datetime, dry_run: bool) -> AreaScan:
    """Measure the account's private storage; kept on the account unless in a dry run."""
    usage = AreaScan.of(scan_area(home_path(account.user_id)))
    if not dry_run:
        save_measurement(account, "private", usage, now)
    return usage


def storage_scan_user(user: AbstractBaseUser) -> UsageScan:
    """Measure the user's private and scratch storage and keep the result on the account."""
    now = timezone.now()
    account = storage_account_for(user, now)
    private = measure_private(account, now, dry_run=False)
    scratch = AreaScan.of(scan_area(scratch_path(user)))
    save_measurement(account, "scratch", scratch, now)
    return UsageScan(private=private, scratch=scratch, measured_at=now)

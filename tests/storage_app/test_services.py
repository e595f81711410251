"""Storage services: accounts, session starts, scans and how removed paths are written down.

Also the helpers the other storage tests build real trees with (``put``, ``files_under``, …).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User

from sessions_app.models import Environment
from sessions_app.services import session_launch
from storage_app.accounts import storage_account_for, storage_session_started
from storage_app.fs_scan import scan_tree
from storage_app.fs_types import path_text
from storage_app.layout import home_path, scratch_path
from storage_app.models import StorageAccount
from storage_app.usage import storage_scan_user

KB = 4096  # one block: file sizes in these tests are whole blocks, so usage is exact
# Tests travel to T0 (after any real clock, so files written now are in its past); files dated
# around PAST are in the past for tests that do not travel (no "future modification time").
T0 = datetime(2031, 3, 1, 8, 0, tzinfo=UTC)
PAST = datetime(2024, 3, 1, 8, 0, tzinfo=UTC)


# --- Helpers shared by the storage tests ------------------------------------------------------


def put(root: Path, rel: str | bytes, blocks: int = 1, mtime: datetime | None = None) -> Path:
    """A regular file of ``blocks`` × 4 KiB under ``root`` (folders made as needed)."""
    path = os.path.join(os.fsencode(root), os.fsencode(rel))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as handle:
        handle.write(b"x" * (blocks * KB))
    if mtime is not None:
        stamp = mtime.timestamp()
        os.utime(path, (stamp, stamp))
    return Path(os.fsdecode(path))


def files_under(root: Path) -> set[str]:
    """Every regular file under ``root`` (relative, not following symlinks)."""
    found = set()
    for top, _dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(top, name)
            if os.path.isfile(path) and not os.path.islink(path):
                found.add(os.path.relpath(path, root))
    return found


def usage(root: Path) -> int:
    return scan_tree(root).bytes_used


def allocated(path: Path) -> int:
    return os.lstat(path).st_blocks * 512


def scratch_of(user: User) -> Path:
    path = scratch_path(user)
    path.mkdir(parents=True, exist_ok=True)
    return path


def home_of(user: User) -> Path:
    path = home_path(user)
    path.mkdir(parents=True, exist_ok=True)
    return path


# --- Tests ------------------------------------------------------------------------------------


def test_path_text_escapes_what_is_not_plain_text_and_keeps_the_rest() -> None:
    assert path_text("données/été.nc".encode()) == "données/été.nc"
    # A byte that is not UTF-8, a newline, the backslash itself, a right-to-left override
    assert path_text(b"bad\xff/a\nb") == "bad\\xff/a\\x0ab"
    assert path_text(b"a\\xff") == "a\\x5cxff"  # never mistaken for the escape of byte 0xff
    assert path_text("evil\u202etxt.exe".encode()) == "evil\\u202etxt.exe"


@pytest.mark.django_db
def test_a_new_account_counts_its_retention_from_its_creation(owner: User, settings: Any) -> None:
    # Given no storage account yet
    with time_machine.travel(T0, tick=False):
        account = storage_account_for(owner)
    # then the private storage has the full retention period from now, no session recorded
    assert account.created_at == T0
    assert account.delete_after == T0 + timedelta(days=settings.STORAGE_RETENTION_DAYS)
    assert account.last_session_at is None
    assert storage_account_for(owner).pk == account.pk


@pytest.mark.django_db
def test_a_session_start_sets_a_new_deadline_and_forgets_old_warnings(owner: User) -> None:
    # Given an account warned about its deadline, whose private storage was even deleted
    account = storage_account_for(owner, T0)
    StorageAccount.objects.filter(pk=account.pk).update(
        retention_warnings_sent=[7, 1], private_deleted_at=T0
    )
    # When the user starts a session 40 days later
    later = T0 + timedelta(days=40)
    storage_session_started(owner, later)
    # then the deadline is 31 days after it, with no warning sent for it yet
    account.refresh_from_db()
    assert account.last_session_at == later
    assert account.delete_after == later + timedelta(days=31)
    assert account.retention_warnings_sent == []
    assert account.private_deleted_at is None


@pytest.mark.django_db
def test_launching_a_session_counts_as_a_session_start(
    accepted: User, environment: Environment
) -> None:
    # When the owner launches (no worker: the session stays queued)
    with time_machine.travel(T0, tick=False):
        result = session_launch(user=accepted, environment_slug=environment.slug, options=None)
    # then their private storage is kept for another period from the launch
    account = StorageAccount.objects.get(user=accepted)
    assert result.created
    assert account.last_session_at == T0
    assert account.delete_after == T0 + timedelta(days=31)


@pytest.mark.django_db
def test_a_scan_stores_both_areas_usage_on_the_account(owner: User) -> None:
    # Given three files in the home and one in scratch
    home, scratch = home_of(owner), scratch_of(owner)
    for name in ("a", "b", "pkgs/c"):
        put(home, name, blocks=2)
    put(scratch, "big", blocks=10)
    # When staff (or a task) scan the user
    with time_machine.travel(T0, tick=False):
        result = storage_scan_user(owner)
    # then the measurement is what du counts, kept on the account
    account = StorageAccount.objects.get(user=owner)
    assert (account.private_bytes, account.private_files) == (usage(home), 3)
    assert (account.scratch_bytes, account.scratch_files) == (usage(scratch), 1)
    assert account.private_measured_at == account.scratch_measured_at == T0
    assert result.private.bytes_used == usage(home)


@pytest.mark.django_db
def test_a_user_without_folders_measures_zero(owner: User) -> None:
    result = storage_scan_user(owner)
    account = StorageAccount.objects.get(user=owner)
    assert not result.private.exists and not result.scratch.exists
    assert (account.private_bytes, account.scratch_bytes) == (0, 0)

"""Private storage retention (service rule 8): warn before a home's deadline, delete it after.

A home is deleted once ``delete_after`` has passed, unless the account is exempt, a session is
active, or a suspension is in force (the user could not have started a session). Each warning
(``STORAGE_RETENTION_WARNING_DAYS`` before the deadline) is marked sent under a row lock and
mailed on commit (:mod:`storage_app.mail`), so each goes once; a deadline reached without its
last warning is moved, so no home goes unannounced.

The deletion is claimed under the account's row lock, which a launch's
``storage_session_started`` waits on: the home is renamed out of the user's place (a launch then
gets a fresh one) before the slow removal (:func:`storage_app.fs_remove.remove_tree`), and a
removal that fails is finished by a later sweep. A dry run decides the same way and changes
nothing but its ``CleanupRun``.
"""

from __future__ import annotations

import logging
import os
import stat
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from sessions_app.selectors import session_active_for
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import SpawnerError
from storage_app import mail

# A module-level name of its own: the race tests replace it to launch during the removal.
from storage_app.fs_remove import remove_tree as _rmtree_under
from storage_app.history import mtime_datetime, run_finish, run_start
from storage_app.layout import home_ensure, home_path
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from storage_app.reports import CleanupReport, RetentionOutcome, format_bytes, format_time
from storage_app.usage import AreaScan, is_folder, save_measurement, scan_area
from suspension_app.selectors import suspension_active_for

log = logging.getLogger(__name__)


def _thresholds() -> list[int]:
    return sorted({int(day) for day in settings.STORAGE_RETENTION_WARNING_DAYS}, reverse=True)


def private_retention_sweep(
    *, now: datetime | None = None, dry_run: bool = False
) -> list[RetentionOutcome]:
    """Warn users whose private storage nears its deadline (e-mail, once per threshold) and
    delete the private storage of those past it: not exempt, no active session, no suspension
    in force (the user could not have started a session).

    Accounts without a storage row have no deadline yet (it starts when the row is created).
    """
    now = now or timezone.now()
    if not dry_run:
        _remove_deleting_leftovers(Path(settings.STORAGE_HOME_ROOT))
    horizon = now + timedelta(days=max(_thresholds(), default=0))
    accounts = StorageAccount.objects.filter(
        delete_after__lte=horizon, retention_exempt=False, private_deleted_at__isnull=True
    ).select_related("user")
    outcomes = []
    for account in accounts.order_by("delete_after", "pk").iterator():
        try:
            outcome = private_retention_apply(account.user, account, now=now, dry_run=dry_run)
        except Exception as exc:
            log.exception("storage: retention failed for %s", account.user.get_username())
            outcome = RetentionOutcome(
                account.user.get_username(), "failed", account.delete_after, str(exc)
            )
        if outcome.action != "none":
            outcomes.append(outcome)
    return outcomes


def private_retention_apply(
    user: AbstractBaseUser, account: StorageAccount, *, now: datetime, dry_run: bool
) -> RetentionOutcome:
    """The retention of one account (as :func:`private_retention_sweep` applies it to each, and
    the storage sweep per user): warn, postpone, delete, or keep, and say which."""
    username = user.get_username()
    deadline = account.delete_after

    def outcome(action: str, detail: str = "") -> RetentionOutcome:
        return RetentionOutcome(username, action, deadline, detail, dry_run)

    thresholds = _thresholds()
    if account.retention_exempt or account.private_deleted_at is not None:
        return outcome("none")
    if now < deadline - timedelta(days=max(thresholds, default=0)):
        return outcome("none")
    if not is_folder(home_path(user)):
        try:
            # The back-end may keep the home as a volume of its own (Kubernetes), which the
            # workers do not mount: its folder here is only a name, and may be gone.
            elsewhere = get_spawner().home_kept_elsewhere(home_path(user).name)
        except SpawnerError as exc:
            return outcome("kept", f"the session back-end did not answer: {exc}")
        if not elsewhere:
            return outcome("none")  # nothing stored, nothing to lose
        if not dry_run:
            home_ensure(user)  # the name the deletion renames away, as for any home
    if session_active_for(user) is not None:
        return outcome("kept", "a session is active")
    if suspension_active_for(user) is not None:
        return outcome("kept", "the account is suspended (no session can be started)")
    sent = {int(day) for day in account.retention_warnings_sent or []}
    due = [day for day in thresholds if day not in sent and now >= deadline - timedelta(days=day)]
    if now >= deadline and thresholds and min(thresholds) not in sent:
        # The deadline came without its last warning (the sweep did not run, or the settings
        # changed): nobody loses their storage unannounced. Warn now, and move the deadline.
        new_deadline = now + timedelta(days=min(thresholds))
        if dry_run:
            return outcome("postponed", f"to {format_time(new_deadline)}")
        if _claim_warning(account, deadline, sent, thresholds, new_deadline):
            _on_commit_warning(account.pk, new_deadline, min(thresholds))
            return outcome("postponed", f"to {format_time(new_deadline)}")
        return outcome("kept", "the account changed meanwhile")
    if now >= deadline:
        return _delete_private(user, account, now=now, dry_run=dry_run)
    if not due:
        return outcome("none")
    days = min(due)
    detail = f"{days} day(s) before {format_time(deadline)}"
    if dry_run:
        return outcome("warned", detail)
    if _claim_warning(account, deadline, sent, sorted(sent | set(due), reverse=True), deadline):
        _on_commit_warning(account.pk, deadline, days)
        return outcome("warned", detail)
    return outcome("kept", "the account changed meanwhile")


def _claim_warning(
    account: StorageAccount,
    deadline: datetime,
    sent: set[int],
    now_sent: list[int],
    new_deadline: datetime,
) -> bool:
    """Mark warnings sent, once: only if the deadline and the sent list are as we read them."""
    with transaction.atomic():
        current = StorageAccount.objects.select_for_update().filter(pk=account.pk).first()
        if (
            current is None
            or current.delete_after != deadline
            or {int(day) for day in current.retention_warnings_sent or []} != sent
        ):
            return False
        StorageAccount.objects.filter(pk=account.pk).update(
            retention_warnings_sent=now_sent, delete_after=new_deadline
        )
    return True


def _on_commit_warning(account_id: int, deadline: datetime, days: int) -> None:
    # Sent after the mark committed: at most once per threshold, even if the mail server fails
    # (a failure is logged; the launcher page warns as well).
    transaction.on_commit(
        lambda: mail.mail_retention_warning(account_id, deadline, days), robust=True
    )


def _delete_private(
    user: AbstractBaseUser, account: StorageAccount, *, now: datetime, dry_run: bool
) -> RetentionOutcome:
    username = user.get_username()
    deadline = account.delete_after
    home = home_path(user)
    root = Path(settings.STORAGE_HOME_ROOT)
    if home.parent != root or home.name in ("", ".", ".."):
        raise ValueError(f"{home} is not a folder directly under STORAGE_HOME_ROOT ({root})")
    before = AreaScan.of(scan_area(home))
    detail = f"{format_bytes(before.bytes_used)} in {before.files} file(s)"

    def outcome(action: str, text: str = detail) -> RetentionOutcome:
        return RetentionOutcome(username, action, deadline, text, dry_run)

    report = CleanupReport(
        kind=CleanupRun.Kind.PRIVATE_RETENTION,
        username=username,
        dry_run=dry_run,
        limit_bytes=0,
        target_bytes=0,
        used_bytes=before.bytes_used,
        over=True,
    )
    if dry_run:
        run = run_start(CleanupRun.Kind.PRIVATE_RETENTION, user, report, now)
        report.files_removed, report.bytes_freed = before.files, before.bytes_used
        run_finish(run, report)
        return outcome("deleted")
    mtime = _home_mtime(home)
    leftover, reason = _claim_home(user, account.pk, deadline, root, home.name, now)
    if leftover is None:
        return outcome("kept", reason)
    # From here the home is no longer the user's: a launch now gets a fresh, empty one.
    run = run_start(CleanupRun.Kind.PRIVATE_RETENTION, user, report, now)
    errors = _rmtree_under(root, leftover)
    left = AreaScan.of(scan_area(root / leftover))
    freed = max(0, before.bytes_used - left.bytes_used)
    report.files_removed = max(0, before.files - left.files)
    report.bytes_freed = freed
    report.errors = len(errors)
    if report.files_removed or not left.exists:
        RemovalRecord.objects.create(
            user_id=user.pk,
            run=run,
            area=RemovalRecord.Area.PRIVATE,
            path=".",
            size=freed,
            mtime=mtime,
            rule=RemovalRecord.Rule.PRIVATE_RETENTION,
            removed_at=now,
        )
    if left.exists:
        # Partly deleted (permission errors, a tree too deep): the renamed folder stays out of
        # the user's place, and the next sweep removes the rest (_remove_deleting_leftovers).
        report.message = f"{len(errors)} error(s), first: {errors[0] if errors else '?'}"
    run_finish(run, report)
    # What the user's place holds now (nothing, or the fresh home of a launch meanwhile).
    save_measurement(account, "private", AreaScan.of(scan_area(home)), now)
    if left.exists:
        return outcome("failed", report.message)
    transaction.on_commit(lambda: mail.mail_private_deleted(account.pk, now, freed), robust=True)
    return outcome("deleted")


# A home being deleted is first renamed to this prefix plus a random hex: folder_name never
# starts with a dot, so such a name is never a user's folder.
_DELETING_PREFIX = ".deleting-"


def _claim_home(
    user: AbstractBaseUser,
    account_id: int,
    deadline: datetime,
    root: Path,
    name: str,
    now: datetime,
) -> tuple[str | None, str]:
    """Take the home away from the user, or say why not: the new name, or None and a reason.

    One transaction holds the account row (a launch's ``storage_session_started`` waits on
    it), checks again what protects the home, records the claim and renames the home within
    the root: no launch can slip in between the check and the removal.
    """
    with transaction.atomic():
        current = StorageAccount.objects.select_for_update().filter(pk=account_id).first()
        if (
            current is None
            or current.delete_after != deadline
            or current.retention_exempt
            or current.private_deleted_at is not None
        ):
            return None, "the account changed meanwhile"
        if session_active_for(user) is not None:
            return None, "a session was started"
        if suspension_active_for(user) is not None:
            return None, "the account is suspended (no session can be started)"
        leftover = _rename_away(root, name)
        if leftover is None:
            return None, "the home is gone"
        try:
            # What the back-end keeps of the home beyond this folder (a Kubernetes volume),
            # under the same lock: no launch can adopt it in between.
            get_spawner().remove_home(name)
        except SpawnerError as exc:
            # Kept: the folder goes back (no launch can have made a new one: they wait on
            # this lock), and the next sweep tries again.
            _rename_back(root, leftover, name)
            return None, f"the session back-end did not remove the home's volume: {exc}"
        StorageAccount.objects.filter(pk=account_id).update(private_deleted_at=now)
    return leftover, ""


def _rename_back(root: Path, leftover: str, name: str) -> None:
    """Undo :func:`_rename_away` (within ``root``, relative to its descriptor)."""
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        os.rename(leftover, name, src_dir_fd=root_fd, dst_dir_fd=root_fd)
    finally:
        os.close(root_fd)


def _rename_away(root: Path, name: str) -> str | None:
    """Rename the folder ``root/name`` to a ``.deleting-…`` name in ``root``; None if gone."""
    leftover = f"{_DELETING_PREFIX}{uuid.uuid4().hex}"
    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            st = os.stat(name, dir_fd=root_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not stat.S_ISDIR(st.st_mode):
            raise NotADirectoryError(f"{root / name} is not a folder")
        os.rename(name, leftover, src_dir_fd=root_fd, dst_dir_fd=root_fd)
    finally:
        os.close(root_fd)
    return leftover


def _remove_deleting_leftovers(root: Path) -> list[str]:
    """Remove the renamed homes that a deletion could not finish (errors, a lost worker)."""
    try:
        root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        return []
    try:
        with os.scandir(root_fd) as entries:
            names = [
                entry.name
                for entry in entries
                if entry.name.startswith(_DELETING_PREFIX) and entry.is_dir(follow_symlinks=False)
            ]
    finally:
        os.close(root_fd)
    errors: list[str] = []
    for name in names:
        errors += _rmtree_under(root, name)
    for error in errors:
        log.warning("storage: could not remove a deleted home: %s", error)
    return errors


def _home_mtime(home: Path) -> datetime | None:
    try:
        return mtime_datetime(os.lstat(home).st_mtime_ns)
    except OSError:
        return None

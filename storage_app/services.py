"""Writes of storage: accounts, scans, the scratch cleanups and the private storage retention.

Service rules 7 and 8. Every cleanup removes exactly what its rule selects and nothing else:

* candidates come from ``fs_scan.scan_tree`` (bounded: at most ``CANDIDATES_PER_PASS`` files in
  memory per pass, never a list of every file) and are removed one by one through
  ``fs_remove``, which walks from the area's root with ``O_NOFOLLOW`` and skips a file that
  changed since the scan; usage is counted down by what each removal freed, and the removals
  stop as soon as usage is at or under the low-water mark: not a byte further;
* scratch cleanups hold the ``scratch`` lease (:class:`~storage_app.models.StorageLock`) while
  they scan and remove: two overlapping cleanups would each count only their own removals and
  together remove more than the rules select;
* file I/O never runs inside a database transaction; removal records are written in batches
  (``RECORD_BATCH``) after the files are gone;
* a dry run scans and decides the same way, unlinks nothing, writes no removal record, no
  measurement, no e-mail and no suspension event; it records only its :class:`CleanupRun`
  (``dry_run=True``) and reports what would go.
"""

from __future__ import annotations

import heapq
import logging
import os
import shutil
import stat
import unicodedata
import uuid
from collections.abc import Generator, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from sessions_app.selectors import session_active_for
from sessions_app.spawners import get_spawner
from sessions_app.spawners.base import SpawnerError
from storage_app import mail
from storage_app.fs_remove import CHANGED, VANISHED, remove_entries, remove_entry, would_remove
from storage_app.fs_scan import scan_tree
from storage_app.fs_types import FileEntry, Order, Removal, ScanResult
from storage_app.layout import home_ensure, home_path, scratch_path
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount, StorageLock
from suspension_app.models import RuleEvent
from suspension_app.selectors import suspension_active_for

log = logging.getLogger(__name__)

# How many cleanup candidates one scan keeps (a bounded heap in the scan, a second one when the
# shared cleanup merges users): a FileEntry with its path is a few hundred bytes, so a pass
# holds a few MB at most. A cleanup that needs more files scans again.
CANDIDATES_PER_PASS = 10_000
# Passes (scan, then remove up to CANDIDATES_PER_PASS files) before a cleanup gives up until
# the next sweep: a tree whose files keep being skipped (changed, unremovable) cannot loop.
MAX_PASSES = 10
# Removal records written per INSERT; a crash loses at most this many records of files that
# are gone (the files themselves are never removed before the decision to record them).
RECORD_BATCH = 500
# Removed files listed by name in a report (the command's output); all are recorded.
REPORT_EXAMPLES = 20
# Paths of files with future modification times sent with a circumvention report.
CIRCUMVENTION_PATHS = 20
# The scratch lease: renewed after every user and every batch of removals, so only a holder
# that stopped working (a lost worker) loses it.
LOCK_LEASE = timedelta(minutes=30)
SCRATCH_LOCK = "scratch"

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# On Linux rmtree works with directory file descriptors (openat, fstat/samestat) and never
# follows a symlink, also one swapped in during the deletion. Deleting a home depends on it.
assert shutil.rmtree.avoids_symlink_attacks, "shutil.rmtree must be symlink-attack resistant"


class StorageBusy(Exception):
    """Another scratch cleanup holds the lease (or this one lost it): try again later."""


class UnknownUser(Exception):
    """``storage_sweep(username=…)`` names nobody."""


# --- Small pieces ---------------------------------------------------------------------------


def path_text(raw: bytes) -> str:
    """A file name (bytes, not necessarily UTF-8) as safe, unambiguous text.

    UTF-8 is decoded; a byte that is not valid UTF-8, an ASCII control character and the
    backslash itself become ``\\xNN`` (the byte's value); other invisible or direction-changing
    characters (Unicode categories Cc, Cf, Zl, Zp) become ``\\uXXXX``. So every escape starts
    with a backslash that the name itself cannot contribute, and nothing in the text can break
    a page, a log line or the database's UTF-8.
    """
    out: list[str] = []
    for char in raw.decode("utf-8", "surrogateescape"):
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, kept by surrogateescape
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x20 or code == 0x7F or char == "\\":
            out.append(f"\\x{code:02x}")
        elif code > 0x7F and unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        else:
            out.append(char)
    return "".join(out)


def _ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _mtime(mtime_ns: int) -> datetime | None:
    """A modification time as a datetime, or None if no datetime can hold it (year > 9999)."""
    try:
        return _EPOCH + timedelta(microseconds=mtime_ns // 1_000)
    except OverflowError:
        return None


def _low_water(limit: int, fraction: float) -> int:
    return int(limit * fraction)


def format_bytes(count: int | None) -> str:
    return "?" if count is None else str(filesizeformat(count)).replace("\xa0", " ")


def _format_time(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


def _is_dir(path: Path) -> bool:
    """A real folder (not a symlink to one) is there."""
    try:
        return stat.S_ISDIR(os.lstat(path).st_mode)
    except OSError:
        return False


def _scan(root: Path, **kwargs: Any) -> ScanResult | None:
    """The scan of an area, or None when the user has no such folder (nothing to count)."""
    if not _is_dir(root):
        return None
    return scan_tree(root, **kwargs)


def _ordered(candidates: list[FileEntry], order: Order) -> list[FileEntry]:
    """Cleanup order (the scan's: allocated bytes, then older first; or modification time,
    then larger first; then the path), whatever order the candidates come in."""
    if order == "largest":
        return sorted(candidates, key=lambda e: (-e.blocks_bytes, e.mtime_ns, e.rel_path))
    return sorted(candidates, key=lambda e: (e.mtime_ns, -e.blocks_bytes, e.rel_path))


def _report_rule(user: AbstractBaseUser, kind: str, details: dict[str, Any]) -> None:
    """Tell the suspension rules; a failure there is logged, never allowed to stop a cleanup."""
    # Imported here: suspension_app.services imports sessions_app.services, which imports this
    # module (to record session starts).
    from suspension_app.rules import suspension_report

    try:
        suspension_report(user, kind, details)
    except Exception:
        log.exception("storage: could not report %s for %s", kind, user.get_username())


# --- The scratch lease ----------------------------------------------------------------------


@dataclass
class _Lease:
    name: str
    holder: str

    def renew(self) -> None:
        renewed = StorageLock.objects.filter(name=self.name, holder=self.holder).update(
            expires_at=timezone.now() + LOCK_LEASE
        )
        if not renewed:
            raise StorageBusy(f"The {self.name} cleanup lease was lost (taken over after expiry).")


@contextmanager
def _scratch_lease(dry_run: bool) -> Iterator[_Lease | None]:
    """Hold the scratch lease for a real cleanup; a dry run removes nothing and needs none."""
    if dry_run:
        yield None
        return
    now = timezone.now()
    lease = _Lease(SCRATCH_LOCK, uuid.uuid4().hex)
    expires_at = now + LOCK_LEASE
    taken = StorageLock.objects.filter(name=lease.name, expires_at__lt=now).update(
        holder=lease.holder, expires_at=expires_at
    )
    if not taken:
        try:
            with transaction.atomic():
                StorageLock.objects.create(
                    name=lease.name, holder=lease.holder, expires_at=expires_at
                )
        except IntegrityError:
            raise StorageBusy(
                "Another storage cleanup is running; try again when it has finished."
            ) from None
    try:
        yield lease
    finally:
        StorageLock.objects.filter(name=lease.name, holder=lease.holder).delete()


# --- Reports --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovedFile:
    username: str
    path: str
    size: int
    mtime: datetime | None


@dataclass
class CleanupReport:
    """What one cleanup found and did (or, in a dry run, would do)."""

    kind: str
    username: str | None  # None: the shared scratch
    dry_run: bool
    limit_bytes: int
    target_bytes: int
    used_bytes: int = 0
    after_bytes: int = 0
    over: bool = False
    files_removed: int = 0  # in a dry run: that would be removed
    bytes_freed: int = 0
    files_skipped: int = 0
    errors: int = 0
    examples: list[RemovedFile] = field(default_factory=list)
    future_mtimes: list[str] = field(default_factory=list)
    run_id: int | None = None
    message: str = ""

    def lines(self) -> list[str]:
        subject = "shared scratch" if self.username is None else "scratch"
        limit = "maximum" if self.username is None else "quota"
        head = (
            f"{subject} {format_bytes(self.used_bytes)} of {format_bytes(self.limit_bytes)} {limit}"
        )
        if not self.over:
            lines = [f"{head}: within the {limit}"]
        else:
            verb = "would remove" if self.dry_run else "removed"
            lines = [
                f"{head}: over, {verb} {self.files_removed} file(s) "
                f"({format_bytes(self.bytes_freed)}) for the low-water mark of "
                f"{format_bytes(self.target_bytes)}; "
                f"{'would then use' if self.dry_run else 'now uses'} "
                f"{format_bytes(self.after_bytes)}"
                + (f"; {self.files_skipped} skipped" if self.files_skipped else "")
            ]
            for item in self.examples:
                owner = f"{item.username}: " if self.username is None else ""
                lines.append(
                    f"  {verb} {owner}{item.path} ({format_bytes(item.size)}, "
                    f"modified {_format_time(item.mtime)})"
                )
            if self.files_removed > len(self.examples):
                lines.append(f"  … and {self.files_removed - len(self.examples)} more")
        if self.future_mtimes:
            lines.append(
                f"  modification times in the future (circumvention): "
                f"{', '.join(self.future_mtimes)}"
            )
        if self.message:
            lines.append(f"  {self.message}")
        return lines


class _Recorder:
    """Counts what a cleanup removed and writes the removal records in batches."""

    def __init__(
        self,
        report: CleanupReport,
        run: CleanupRun,
        rule: str,
        now: datetime,
        lease: _Lease | None,
    ) -> None:
        self.report = report
        self.run = run
        self.rule = rule
        self.now = now
        self.lease = lease
        self.pending: list[RemovalRecord] = []

    def add(self, user_id: int, username: str, removal: Removal) -> bool:
        """Count one removal's outcome; True if the file is gone (would be, in a dry run)."""
        entry = removal.entry
        if not would_remove(removal):
            self.report.files_skipped += 1
            if removal.reason.startswith("error"):
                self.report.errors += 1
            log.info(
                "storage: %s: skipped %s: %s", username, path_text(entry.rel_path), removal.reason
            )
            return False
        self.report.files_removed += 1
        self.report.bytes_freed += entry.blocks_bytes
        text = path_text(entry.rel_path)
        mtime = _mtime(entry.mtime_ns)
        if len(self.report.examples) < REPORT_EXAMPLES:
            self.report.examples.append(RemovedFile(username, text, entry.size, mtime))
        if removal.removed:
            self.pending.append(
                RemovalRecord(
                    user_id=user_id,
                    run=self.run,
                    area=RemovalRecord.Area.SCRATCH,
                    path=text,
                    size=entry.size,
                    mtime=mtime,
                    rule=self.rule,
                    removed_at=self.now,
                )
            )
            if len(self.pending) >= RECORD_BATCH:
                self.flush()
        return True

    def flush(self) -> None:
        if self.pending:
            RemovalRecord.objects.bulk_create(self.pending)
            self.pending = []
        if self.lease is not None:
            self.lease.renew()


def _run_start(
    kind: str, user: AbstractBaseUser | None, report: CleanupReport, now: datetime
) -> CleanupRun:
    return CleanupRun.objects.create(
        kind=kind,
        user_id=user.pk if user is not None else None,
        started_at=now,
        dry_run=report.dry_run,
        used_bytes=report.used_bytes,
        limit_bytes=report.limit_bytes,
        target_bytes=report.target_bytes,
    )


def _run_finish(run: CleanupRun, report: CleanupReport) -> None:
    CleanupRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(),
        files_removed=report.files_removed,
        bytes_freed=report.bytes_freed,
        files_skipped=report.files_skipped,
        errors=report.errors,
        message=report.message,
    )


# --- Accounts and measurements --------------------------------------------------------------


def _new_account_fields(now: datetime) -> dict[str, Any]:
    # An account that never started a session counts from its creation (the first session,
    # sweep or scan that saw the user): an installation that starts tracking never deletes a
    # home on its first sweep, and every home gets the full period and its warnings.
    return {
        "created_at": now,
        "delete_after": now + timedelta(days=settings.STORAGE_RETENTION_DAYS),
    }


def storage_account_for(user: AbstractBaseUser, now: datetime | None = None) -> StorageAccount:
    """The user's storage account, created on first use."""
    account, _ = StorageAccount.objects.get_or_create(
        user_id=user.pk, defaults=_new_account_fields(now or timezone.now())
    )
    return account


def _account(user: AbstractBaseUser, now: datetime, dry_run: bool) -> StorageAccount:
    if not dry_run:
        return storage_account_for(user, now)
    existing = StorageAccount.objects.filter(user_id=user.pk).first()
    return existing or StorageAccount(user_id=user.pk, **_new_account_fields(now))


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


def _save_measurement(account: StorageAccount, area: str, usage: AreaScan, now: datetime) -> None:
    # Only the measurement's columns: a staff member may be editing the quotas meanwhile.
    StorageAccount.objects.filter(pk=account.pk).update(
        **{
            f"{area}_bytes": usage.bytes_used,
            f"{area}_files": usage.files,
            f"{area}_errors": usage.errors,
            f"{area}_measured_at": now,
        }
    )


def _measure_private(
    account: StorageAccount, username: str, now: datetime, dry_run: bool
) -> AreaScan:
    usage = AreaScan.of(_scan(home_path(account.user_id)))
    if not dry_run:
        _save_measurement(account, "private", usage, now)
    return usage


def storage_scan_user(user: AbstractBaseUser) -> UsageScan:
    """Measure the user's private and scratch storage and keep the result on the account."""
    now = timezone.now()
    account = storage_account_for(user, now)
    username = user.get_username()
    private = _measure_private(account, username, now, dry_run=False)
    scratch = AreaScan.of(_scan(scratch_path(user)))
    _save_measurement(account, "scratch", scratch, now)
    return UsageScan(private=private, scratch=scratch, measured_at=now)


# --- Scratch: one user's quota --------------------------------------------------------------


def scratch_enforce_user(
    user: AbstractBaseUser, *, dry_run: bool = False, now: datetime | None = None
) -> CleanupReport:
    """Measure the user's scratch and, over its quota, remove files until under the low-water
    mark: the largest first, or the least recently modified (``STORAGE_SCRATCH_POLICY``).

    Every enforcement that finds the user over quota is reported to the suspension rules
    (``scratch_quota_exceeded``: the rule counts repeats within its window), and a scan that
    sees modification times in the future reports ``cleanup_circumvention``. Raises
    :class:`StorageBusy` when another cleanup is running.
    """
    now = now or timezone.now()
    with _scratch_lease(dry_run) as lease:
        account = _account(user, now, dry_run)
        return _enforce_user(user, account, dry_run=dry_run, now=now, lease=lease)


def _enforce_user(
    user: AbstractBaseUser,
    account: StorageAccount,
    *,
    dry_run: bool,
    now: datetime,
    lease: _Lease | None,
) -> CleanupReport:
    username = user.get_username()
    root = scratch_path(user)
    order: Order = "oldest" if settings.STORAGE_SCRATCH_POLICY == "oldest" else "largest"
    rule = (
        RemovalRecord.Rule.SCRATCH_QUOTA_OLDEST
        if order == "oldest"
        else RemovalRecord.Rule.SCRATCH_QUOTA_LARGEST
    )
    quota = account.scratch_quota
    report = CleanupReport(
        kind=CleanupRun.Kind.SCRATCH_USER,
        username=username,
        dry_run=dry_run,
        limit_bytes=quota,
        target_bytes=_low_water(quota, settings.STORAGE_SCRATCH_LOW_WATER),
    )
    scan_options: dict[str, Any] = {
        "keep": CANDIDATES_PER_PASS,
        "order": order,
        "now_ns": _ns(now),
        "future_slack_ns": settings.STORAGE_FUTURE_MTIME_SLACK_SECONDS * 1_000_000_000,
    }
    scan = _scan(root, **scan_options)
    usage = AreaScan.of(scan)
    report.used_bytes = report.after_bytes = usage.bytes_used
    future_count = len(scan.future_mtimes) if scan is not None else 0
    if scan is not None:
        report.future_mtimes = [
            path_text(entry.rel_path) for entry in scan.future_mtimes[:CIRCUMVENTION_PATHS]
        ]
    if scan is None or scan.bytes_used <= quota:
        if not dry_run:
            _save_measurement(account, "scratch", usage, now)
            _report_circumvention(user, report, future_count)
        return report

    report.over = True
    if lease is not None:
        lease.renew()  # lost while scanning: raise before anything is removed
    run = _run_start(CleanupRun.Kind.SCRATCH_USER, user, report, now)
    report.run_id = run.pk
    recorder = _Recorder(report, run, rule, now, lease)
    estimate = scan.bytes_used
    try:
        for _ in range(MAX_PASSES):
            removed_before = report.files_removed
            # Closed when we stop early, so the root's descriptor is released at once.
            removals = remove_entries(root, _ordered(scan.candidates, order), dry_run=dry_run)
            with closing(cast(Generator[Removal, None, None], removals)):
                for removal in removals:
                    if recorder.add(user.pk, username, removal) or _gone_since_scan(removal):
                        estimate -= removal.entry.blocks_bytes
                    if estimate <= report.target_bytes:
                        break
            recorder.flush()
            exhausted = len(scan.candidates) < CANDIDATES_PER_PASS
            if (
                estimate <= report.target_bytes
                or dry_run
                or exhausted
                or report.files_removed == removed_before
            ):
                break
            # The scan saw more files than it kept: measure again and take the next ones.
            scan = _scan(root, **scan_options)
            if scan is None:
                estimate = 0
                break
            estimate = scan.bytes_used
            if estimate <= report.target_bytes:
                break
        else:
            report.message = f"Stopped after {MAX_PASSES} passes; the next sweep goes on."
    finally:
        recorder.flush()
        report.after_bytes = estimate
        if not dry_run and report.files_removed:
            # The truth, not the estimate (a removed name of a hard-linked file frees nothing).
            final = AreaScan.of(_scan(root))
            report.after_bytes = final.bytes_used
            _save_measurement(account, "scratch", final, now)
        elif not dry_run:
            _save_measurement(account, "scratch", usage, now)
        if report.after_bytes > report.target_bytes and not report.message:
            report.message = (
                "Still over the low-water mark: the remaining files could not be removed."
            )
        _run_finish(run, report)
    if not dry_run:
        _report_rule(
            user,
            RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED,
            {
                "used_bytes": report.used_bytes,
                "quota_bytes": quota,
                "files_removed": report.files_removed,
                "bytes_freed": report.bytes_freed,
                "cleanup_run": run.pk,
            },
        )
        _report_circumvention(user, report, future_count)
    return report


def _report_circumvention(user: AbstractBaseUser, report: CleanupReport, count: int) -> None:
    # Dated ahead, a file looks recently modified to the oldest-first cleanups forever.
    if report.future_mtimes:
        _report_rule(
            user,
            RuleEvent.Kind.CLEANUP_CIRCUMVENTION,
            {
                "what": "scratch files with modification times in the future",
                "paths": report.future_mtimes,
                "count": count,  # at most the scan's keep_future
                "slack_seconds": settings.STORAGE_FUTURE_MTIME_SLACK_SECONDS,
            },
        )


# --- Scratch: the shared maximum ------------------------------------------------------------


@dataclass(order=True)
class _Oldest:
    """A heap item: the heap's top is the most recently modified file kept, replaced first."""

    neg_mtime_ns: int
    user_id: int = field(compare=False)
    username: str = field(compare=False)
    root: Path = field(compare=False)
    entry: FileEntry = field(compare=False)


def _gone_since_scan(removal: Removal) -> bool:
    """The user removed or changed the file after the scan: its space counts as gone (erring
    towards removing less; the next sweep measures again), so the cleanup does not take the
    next file in its place."""
    return removal.reason in (VANISHED, CHANGED)


def _shared_scan(limit: int, lease: _Lease | None = None) -> tuple[int, list[_Oldest], bool]:
    """The whole scratch's usage and its ``limit`` least recently modified files, across users.

    Memory stays bounded: one user's scan keeps at most ``limit`` files, merged into one heap of
    at most ``limit``. Returns (bytes used, the files oldest first, whether that is every file).
    """
    total = 0
    heap: list[_Oldest] = []
    complete = True
    users = get_user_model().objects.order_by("pk").only("pk", "username")
    for user in users.iterator():
        username = user.get_username()
        root = scratch_path(user)
        scan = _scan(root, keep=limit, order="oldest")
        if lease is not None:
            lease.renew()  # a scan of every user's scratch can outlast the lease
        if scan is None:
            continue
        total += scan.bytes_used
        if scan.files > len(scan.candidates):
            complete = False
        for entry in scan.candidates:
            item = _Oldest(-entry.mtime_ns, user.pk, username, root, entry)
            if len(heap) < limit:
                heapq.heappush(heap, item)
            elif item.neg_mtime_ns > heap[0].neg_mtime_ns:
                heapq.heapreplace(heap, item)
                complete = False
            else:
                complete = False
    # Least recently modified first; on a tie, as one user's scan orders them (larger first).
    ordered = sorted(
        heap,
        key=lambda i: (-i.neg_mtime_ns, -i.entry.blocks_bytes, i.user_id, i.entry.rel_path),
    )
    return total, ordered, complete


def scratch_enforce_shared(*, dry_run: bool = False, now: datetime | None = None) -> CleanupReport:
    """Over ``STORAGE_SHARED_SCRATCH_MAX_BYTES`` in all, remove the least recently modified
    files across all users until the whole is under its low-water mark.

    Raises :class:`StorageBusy` when another cleanup is running.
    """
    now = now or timezone.now()
    with _scratch_lease(dry_run) as lease:
        return _enforce_shared(dry_run=dry_run, now=now, lease=lease)


def _enforce_shared(*, dry_run: bool, now: datetime, lease: _Lease | None) -> CleanupReport:
    maximum = int(settings.STORAGE_SHARED_SCRATCH_MAX_BYTES)
    report = CleanupReport(
        kind=CleanupRun.Kind.SCRATCH_SHARED,
        username=None,
        dry_run=dry_run,
        limit_bytes=maximum,
        target_bytes=_low_water(maximum, settings.STORAGE_SHARED_SCRATCH_LOW_WATER),
    )
    total, candidates, complete = _shared_scan(CANDIDATES_PER_PASS, lease)
    report.used_bytes = report.after_bytes = total
    if total <= maximum:
        return report
    report.over = True
    run = _run_start(CleanupRun.Kind.SCRATCH_SHARED, None, report, now)
    report.run_id = run.pk
    recorder = _Recorder(report, run, RemovalRecord.Rule.SCRATCH_SHARED_LRU, now, lease)
    estimate = total
    try:
        for _ in range(MAX_PASSES):
            removed_before = report.files_removed
            for item in candidates:
                removal = remove_entry(item.root, item.entry, dry_run=dry_run)
                if recorder.add(item.user_id, item.username, removal) or _gone_since_scan(removal):
                    estimate -= item.entry.blocks_bytes
                if estimate <= report.target_bytes:
                    break
            recorder.flush()
            if (
                estimate <= report.target_bytes
                or dry_run
                or complete
                or report.files_removed == removed_before
            ):
                break
            total, candidates, complete = _shared_scan(CANDIDATES_PER_PASS, lease)
            estimate = total
            if estimate <= report.target_bytes:
                break
        else:
            report.message = f"Stopped after {MAX_PASSES} passes; the next sweep goes on."
    finally:
        recorder.flush()
        report.after_bytes = estimate
        if report.after_bytes > report.target_bytes and not report.message:
            report.message = (
                "Still over the low-water mark: the remaining files could not be removed."
            )
        _run_finish(run, report)
    return report


# --- Private storage retention --------------------------------------------------------------


@dataclass(frozen=True)
class RetentionOutcome:
    """What the retention did for one account: ``action`` is one of ``none``, ``warned``,
    ``postponed`` (a deadline reached without its last warning), ``deleted``, ``kept`` (an
    active session, a suspension, or the account changed meanwhile) or ``failed``."""

    username: str
    action: str
    delete_after: datetime | None
    detail: str = ""
    dry_run: bool = False

    def line(self) -> str:
        if self.action == "none":
            return f"retention: nothing to do (delete after {_format_time(self.delete_after)})"
        verb = {
            "warned": "would warn" if self.dry_run else "warned",
            "postponed": "would warn and postpone" if self.dry_run else "warned and postponed",
            "deleted": "would delete the private storage"
            if self.dry_run
            else "deleted the private storage",
        }.get(self.action, self.action)
        return f"retention: {verb}" + (f": {self.detail}" if self.detail else "")


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
            outcome = _retention_user(account.user, account, now=now, dry_run=dry_run)
        except Exception as exc:
            log.exception("storage: retention failed for %s", account.user.get_username())
            outcome = RetentionOutcome(
                account.user.get_username(), "failed", account.delete_after, str(exc)
            )
        if outcome.action != "none":
            outcomes.append(outcome)
    return outcomes


def _retention_user(
    user: AbstractBaseUser, account: StorageAccount, *, now: datetime, dry_run: bool
) -> RetentionOutcome:
    username = user.get_username()
    deadline = account.delete_after

    def outcome(action: str, detail: str = "") -> RetentionOutcome:
        return RetentionOutcome(username, action, deadline, detail, dry_run)

    thresholds = _thresholds()
    if account.retention_exempt or account.private_deleted_at is not None:
        return outcome("none")
    if now < deadline - timedelta(days=max(thresholds, default=0)):
        return outcome("none")
    if not _is_dir(home_path(user)):
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
            return outcome("postponed", f"to {_format_time(new_deadline)}")
        if _claim_warning(account, deadline, sent, thresholds, new_deadline):
            _on_commit_warning(account.pk, new_deadline, min(thresholds))
            return outcome("postponed", f"to {_format_time(new_deadline)}")
        return outcome("kept", "the account changed meanwhile")
    if now >= deadline:
        return _delete_private(user, account, now=now, dry_run=dry_run)
    if not due:
        return outcome("none")
    days = min(due)
    detail = f"{days} day(s) before {_format_time(deadline)}"
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
    before = AreaScan.of(_scan(home))
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
        run = _run_start(CleanupRun.Kind.PRIVATE_RETENTION, user, report, now)
        report.files_removed, report.bytes_freed = before.files, before.bytes_used
        _run_finish(run, report)
        return outcome("deleted")
    mtime = _home_mtime(home)
    leftover, reason = _claim_home(user, account.pk, deadline, root, home.name, now)
    if leftover is None:
        return outcome("kept", reason)
    # From here the home is no longer the user's: a launch now gets a fresh, empty one.
    run = _run_start(CleanupRun.Kind.PRIVATE_RETENTION, user, report, now)
    errors = _rmtree_under(root, leftover)
    left = AreaScan.of(_scan(root / leftover))
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
    _run_finish(run, report)
    # What the user's place holds now (nothing, or the fresh home of a launch meanwhile).
    _save_measurement(account, "private", AreaScan.of(_scan(home)), now)
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
        return _mtime(os.lstat(home).st_mtime_ns)
    except OSError:
        return None


def _rmtree_under(root: Path, name: str) -> list[str]:
    """Delete ``root/name`` with every path relative to a descriptor of ``root``: nothing
    outside ``root`` is opened, a symlink is never followed. Returns the errors."""
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"not a single folder name: {name!r}")
    errors: list[str] = []

    def onerror(function: Any, path: str, exc_info: Any) -> None:
        errors.append(f"{path_text(os.fsencode(path))}: {exc_info[1]}")

    root_fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        shutil.rmtree(name, onerror=onerror, dir_fd=root_fd)
        if errors and _exists_in(root_fd, name):
            # Read-only folders (the notebooks library is 0555, users chmod their own): make
            # every folder writable, never through a link, and try once more.
            errors.clear()
            _folders_writable(root_fd, name)
            shutil.rmtree(name, onerror=onerror, dir_fd=root_fd)
    except RecursionError:
        # rmtree and fwalk recurse once per folder level: a tree deeper than the interpreter
        # allows is left (partly) in place and reported.
        errors.append(f"{name}: the folder tree is too deep to delete")
    finally:
        os.close(root_fd)
    return errors


def _exists_in(dir_fd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return True


def _folders_writable(root_fd: int, name: str) -> None:
    """Give the owner full rights on ``name`` and every folder in it, never following a link
    (``os.fwalk`` does not enter a folder swapped for a link)."""
    _chmod_folder(name, root_fd)
    for _top, folders, _files, dir_fd in os.fwalk(name, follow_symlinks=False, dir_fd=root_fd):
        for folder in folders:
            _chmod_folder(folder, dir_fd)


def _chmod_folder(name: str, dir_fd: int) -> None:
    # Linux has no lchmod: open the entry itself (O_PATH | O_NOFOLLOW opens a link as the
    # link), check it is a folder, and change exactly that inode through /proc/self/fd.
    try:
        fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except OSError:
        return
    try:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            os.chmod(f"/proc/self/fd/{fd}", 0o700)
    except OSError:
        pass  # rmtree then reports what it cannot remove
    finally:
        os.close(fd)


# --- One full pass --------------------------------------------------------------------------


@dataclass
class UserSweep:
    username: str
    private: AreaScan | None = None
    private_quota: int = 0
    scratch: CleanupReport | None = None
    retention: RetentionOutcome | None = None
    error: str = ""

    def lines(self) -> list[str]:
        lines = [f"{self.username}:"]
        if self.error:
            return [*lines, f"  failed: {self.error}"]
        if self.private is not None:
            over = " (over quota)" if self.private.bytes_used > self.private_quota else ""
            lines.append(
                f"  private {format_bytes(self.private.bytes_used)} of "
                f"{format_bytes(self.private_quota)} quota{over}"
                + ("" if self.private.exists else " (no folder)")
            )
        if self.scratch is not None:
            lines.extend(f"  {line}" for line in self.scratch.lines())
        if self.retention is not None:
            lines.append(f"  {self.retention.line()}")
        return lines


@dataclass
class SweepReport:
    """One pass over every user (or one): what was measured, removed, warned and deleted."""

    dry_run: bool
    started_at: datetime
    users: list[UserSweep] = field(default_factory=list)
    shared: CleanupReport | None = None
    finished_at: datetime | None = None

    @property
    def failures(self) -> list[UserSweep]:
        return [user for user in self.users if user.error]

    def summary(self) -> str:
        """One line for the log: what the pass did in all."""
        cleanups = [user.scratch for user in self.users if user.scratch and user.scratch.over]
        if self.shared is not None and self.shared.over:
            cleanups.append(self.shared)
        actions = [user.retention.action for user in self.users if user.retention]
        return (
            f"{len(self.users)} user(s); {len(cleanups)} scratch cleanup(s) removed "
            f"{sum(c.files_removed for c in cleanups)} file(s) "
            f"({format_bytes(sum(c.bytes_freed for c in cleanups))}); "
            f"{actions.count('warned') + actions.count('postponed')} retention warning(s), "
            f"{actions.count('deleted')} private storage(s) deleted; "
            f"{len(self.failures)} failure(s)" + (" (dry run)" if self.dry_run else "")
        )

    def lines(self) -> list[str]:
        mode = " (dry run: nothing is changed)" if self.dry_run else ""
        lines = [f"Storage sweep at {_format_time(self.started_at)}{mode}"]
        for user in self.users:
            lines.extend(user.lines())
        if self.shared is not None:
            lines.extend(self.shared.lines())
        else:
            lines.append("shared scratch: not checked (one user only)")
        if self.failures:
            lines.append(f"{len(self.failures)} user(s) failed; see the log.")
        return lines


def storage_sweep(*, dry_run: bool = False, username: str | None = None) -> SweepReport:
    """One full pass: measure every user's storage, enforce each scratch quota, apply the
    retention of private storage, then (for all users only) the shared scratch maximum.

    A user whose step fails is logged and passed over; the pass goes on. Raises
    :class:`UnknownUser` for an unknown ``username`` and :class:`StorageBusy` when another
    cleanup holds the scratch lease.
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
    with _scratch_lease(dry_run) as lease:
        for user in users.iterator():
            report.users.append(_sweep_user(user, now=now, dry_run=dry_run, lease=lease))
            if lease is not None:
                lease.renew()
        if username is None:
            report.shared = _enforce_shared(dry_run=dry_run, now=now, lease=lease)
    report.finished_at = timezone.now()
    return report


def _sweep_user(
    user: AbstractBaseUser, *, now: datetime, dry_run: bool, lease: _Lease | None
) -> UserSweep:
    result = UserSweep(user.get_username())
    try:
        account = _account(user, now, dry_run)
        result.private_quota = account.private_quota
        result.private = _measure_private(account, result.username, now, dry_run)
        result.scratch = _enforce_user(user, account, dry_run=dry_run, now=now, lease=lease)
        if account.pk is not None:
            account.refresh_from_db()  # the measurements just written
        result.retention = _retention_user(user, account, now=now, dry_run=dry_run)
    except StorageBusy:
        raise
    except Exception as exc:
        log.exception("storage sweep: %s failed", result.username)
        result.error = f"{type(exc).__name__}: {exc}"
    return result

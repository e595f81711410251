"""The scratch cleanups (service rule 7): each user's quota, and the shared maximum.

Every cleanup removes exactly what its rule selects and nothing else:

* candidates come from ``fs_scan.scan_tree`` (bounded: at most ``CANDIDATES_PER_PASS`` files in
  memory per pass, never a list of every file) and are removed one by one through
  ``fs_remove``, which walks from the area's root with ``O_NOFOLLOW`` and skips a file that
  changed since the scan; usage is counted down by what each removal freed, and the removals
  stop as soon as usage is at or under the low-water mark: not a byte further. Both cleanups
  share that one loop (:func:`_remove_until_low_water`) and differ only in their passes;
* they hold the scratch lease (:mod:`storage_app.lease`) while they scan and remove;
* file I/O never runs inside a database transaction; removal records are written in batches
  after the files are gone (:mod:`storage_app.history`);
* a dry run scans and decides the same way, unlinks nothing, writes no removal record, no
  measurement and no suspension event; it records only its ``CleanupRun`` (``dry_run=True``)
  and reports what would go.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from storage_app.accounts import storage_account_for
from storage_app.fs_remove import CHANGED, VANISHED, remove_entries, remove_entry
from storage_app.fs_types import FileEntry, Order, Removal, ScanResult, path_text
from storage_app.history import Recorder, run_finish, run_start
from storage_app.layout import scratch_path
from storage_app.lease import Lease, scratch_lease
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from storage_app.reports import CleanupReport
from storage_app.usage import AreaScan, save_measurement

# A module-level name of its own: the race tests replace it to act between scan and removal.
from storage_app.usage import scan_area as _scan
from suspension_app import rules as suspension_rules
from suspension_app.models import RuleEvent

log = logging.getLogger(__name__)

# How many cleanup candidates one scan keeps (a bounded heap in the scan, a second one when the
# shared cleanup merges users): a FileEntry with its path is a few hundred bytes, so a pass
# holds a few MB at most. A cleanup that needs more files scans again.
CANDIDATES_PER_PASS = 10_000
# Passes (scan, then remove up to CANDIDATES_PER_PASS files) before a cleanup gives up until
# the next sweep: a tree whose files keep being skipped (changed, unremovable) cannot loop.
MAX_PASSES = 10
# Paths of files with future modification times sent with a circumvention report.
CIRCUMVENTION_PATHS = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def _low_water(limit: int, fraction: float) -> int:
    return int(limit * fraction)


def _ordered(candidates: list[FileEntry], order: Order) -> list[FileEntry]:
    """Cleanup order (the scan's: allocated bytes, then older first; or modification time,
    then larger first; then the path), whatever order the candidates come in."""
    if order == "largest":
        return sorted(candidates, key=lambda e: (-e.blocks_bytes, e.mtime_ns, e.rel_path))
    return sorted(candidates, key=lambda e: (e.mtime_ns, -e.blocks_bytes, e.rel_path))


def _gone_since_scan(removal: Removal) -> bool:
    """The user removed or changed the file after the scan: its space counts as gone (erring
    towards removing less; the next sweep measures again), so the cleanup does not take the
    next file in its place."""
    return removal.reason in (VANISHED, CHANGED)


def _report_rule(user: AbstractBaseUser, kind: str, details: dict[str, Any]) -> None:
    """Tell the suspension rules; a failure there is logged, never allowed to stop a cleanup."""
    # Looked up on its module at the call: the tests replace ``suspension_report`` there.
    try:
        suspension_rules.suspension_report(user, kind, details)
    except Exception:
        log.exception("storage: could not report %s for %s", kind, user.get_username())


# --- The one removal loop -------------------------------------------------------------------

Removals = Generator[tuple[int, str, Removal], None, None]  # (user id, username, outcome)


@dataclass
class _Pass:
    """One scan's worth of a cleanup: the usage it measured, the removals of its candidates in
    cleanup order (lazy: a file is removed when its outcome is taken), and whether the scan
    kept every file it saw (then scanning again finds nothing new)."""

    used_bytes: int
    removals: Removals
    complete: bool


def _remove_until_low_water(
    report: CleanupReport,
    passes: Iterator[_Pass],
    *,
    user: AbstractBaseUser | None,
    rule: str,
    now: datetime,
    lease: Lease | None,
    measure_after: Callable[[], None] | None = None,
) -> None:
    """Remove the passes' candidates in order until usage is at or under the report's target.

    Usage (``report.after_bytes``, an estimate until ``measure_after`` measures) is counted down
    by what each removal freed, or what the user removed meanwhile, and the loop stops as soon
    as it reaches the target. A pass that runs out while still over scans again (the next of
    ``passes``), at most :data:`MAX_PASSES` times. The run and its records are written as it
    goes (the lease renewed with each batch) and finished whatever happens.
    """
    run = run_start(report.kind, user, report, now)
    report.run_id = run.pk
    recorder = Recorder(report, run, rule, now, lease)
    try:
        current = next(passes)
        report.after_bytes = current.used_bytes
        for _ in range(MAX_PASSES):
            removed_before = report.files_removed
            # Closed when we stop early, so the root's descriptor is released at once.
            with closing(current.removals):
                for user_id, username, removal in current.removals:
                    if recorder.add(user_id, username, removal) or _gone_since_scan(removal):
                        report.after_bytes -= removal.entry.blocks_bytes
                    if report.after_bytes <= report.target_bytes:
                        break
            recorder.flush()
            if (
                report.after_bytes <= report.target_bytes
                or report.dry_run
                or current.complete
                or report.files_removed == removed_before
            ):
                break
            # The scan saw more files than it kept: measure again and take the next ones.
            following = next(passes, None)
            if following is None:  # the area is gone
                report.after_bytes = 0
                break
            current = following
            report.after_bytes = current.used_bytes
            if report.after_bytes <= report.target_bytes:
                break
        else:
            report.message = f"Stopped after {MAX_PASSES} passes; the next sweep goes on."
    finally:
        recorder.flush()
        if measure_after is not None:
            measure_after()
        if report.after_bytes > report.target_bytes and not report.message:
            report.message = (
                "Still over the low-water mark: the remaining files could not be removed."
            )
        run_finish(run, report)


def _tagged(user_id: int, username: str, removals: Generator[Removal, None, None]) -> Removals:
    with closing(removals):
        for removal in removals:
            yield user_id, username, removal


# --- One user's quota -----------------------------------------------------------------------


def scratch_enforce_user(
    user: AbstractBaseUser, *, dry_run: bool = False, now: datetime | None = None
) -> CleanupReport:
    """Measure the user's scratch and, over its quota, remove files until under the low-water
    mark: the largest first, or the least recently modified (``STORAGE_SCRATCH_POLICY``).

    Every enforcement that finds the user over quota is reported to the suspension rules
    (``scratch_quota_exceeded``: the rule counts repeats within its window), and a scan that
    sees modification times in the future reports ``cleanup_circumvention``. Raises
    :class:`~storage_app.lease.StorageBusy` when another cleanup is running.
    """
    now = now or timezone.now()
    with scratch_lease(dry_run) as lease:
        account = storage_account_for(user, now, dry_run=dry_run)
        return enforce_user_quota(user, account, dry_run=dry_run, now=now, lease=lease)


def enforce_user_quota(
    user: AbstractBaseUser,
    account: StorageAccount,
    *,
    dry_run: bool,
    now: datetime,
    lease: Lease | None,
) -> CleanupReport:
    """:func:`scratch_enforce_user` for a caller that holds the lease (the sweep)."""
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
            save_measurement(account, "scratch", usage, now)
            _report_circumvention(user, report, future_count)
        return report

    report.over = True
    if lease is not None:
        lease.renew()  # lost while scanning: raise before anything is removed

    def passes() -> Iterator[_Pass]:
        current: ScanResult | None = scan
        while current is not None:
            removals = remove_entries(root, _ordered(current.candidates, order), dry_run=dry_run)
            complete = len(current.candidates) < CANDIDATES_PER_PASS
            yield _Pass(current.bytes_used, _tagged(user.pk, username, removals), complete)
            current = _scan(root, **scan_options)

    def measure_after() -> None:
        if dry_run:
            return
        if report.files_removed:
            # The truth, not the estimate (a removed name of a hard-linked file frees nothing).
            final = AreaScan.of(_scan(root))
            report.after_bytes = final.bytes_used
            save_measurement(account, "scratch", final, now)
        else:
            save_measurement(account, "scratch", usage, now)

    _remove_until_low_water(
        report, passes(), user=user, rule=rule, now=now, lease=lease, measure_after=measure_after
    )
    if not dry_run:
        _report_rule(
            user,
            RuleEvent.Kind.SCRATCH_QUOTA_EXCEEDED,
            {
                "used_bytes": report.used_bytes,
                "quota_bytes": quota,
                "files_removed": report.files_removed,
                "bytes_freed": report.bytes_freed,
                "cleanup_run": report.run_id,
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


# --- The shared maximum ---------------------------------------------------------------------


@dataclass(order=True)
class _Oldest:
    """A heap item: the heap's top is the most recently modified file kept, replaced first."""

    neg_mtime_ns: int
    user_id: int = field(compare=False)
    username: str = field(compare=False)
    root: Path = field(compare=False)
    entry: FileEntry = field(compare=False)


def _shared_scan(limit: int, lease: Lease | None = None) -> tuple[int, list[_Oldest], bool]:
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


def _shared_removals(candidates: list[_Oldest], dry_run: bool) -> Removals:
    for item in candidates:
        yield item.user_id, item.username, remove_entry(item.root, item.entry, dry_run=dry_run)


def scratch_enforce_shared(*, dry_run: bool = False, now: datetime | None = None) -> CleanupReport:
    """Over ``STORAGE_SHARED_SCRATCH_MAX_BYTES`` in all, remove the least recently modified
    files across all users until the whole is under its low-water mark.

    Raises :class:`~storage_app.lease.StorageBusy` when another cleanup is running.
    """
    now = now or timezone.now()
    with scratch_lease(dry_run) as lease:
        return enforce_shared_maximum(dry_run=dry_run, now=now, lease=lease)


def enforce_shared_maximum(*, dry_run: bool, now: datetime, lease: Lease | None) -> CleanupReport:
    """:func:`scratch_enforce_shared` for a caller that holds the lease (the sweep)."""
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

    def passes() -> Iterator[_Pass]:
        used, items, whole = total, candidates, complete
        while True:
            yield _Pass(used, _shared_removals(items, dry_run), whole)
            used, items, whole = _shared_scan(CANDIDATES_PER_PASS, lease)

    _remove_until_low_water(
        report,
        passes(),
        user=None,
        rule=RemovalRecord.Rule.SCRATCH_SHARED_LRU,
        now=now,
        lease=lease,
    )
    return report

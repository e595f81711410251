"""The history staff and users read: one :class:`~storage_app.models.CleanupRun` per cleanup
that acted (or, dry, would have), one :class:`~storage_app.models.RemovalRecord` per removed
file (or whole home).

Records are written after the files are gone, never inside a transaction around file I/O, and
in batches (:data:`RECORD_BATCH`) during a long cleanup.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone

from storage_app.fs_remove import would_remove
from storage_app.fs_types import Removal, path_text
from storage_app.lease import Lease
from storage_app.models import CleanupRun, RemovalRecord
from storage_app.reports import CleanupReport, RemovedFile

log = logging.getLogger(__name__)

# Removal records written per INSERT; a crash loses at most this many records of files that
# are gone (the files themselves are never removed before the decision to record them).
RECORD_BATCH = 500
# Removed files listed by name in a report (the command's output); all are recorded.
REPORT_EXAMPLES = 20

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def mtime_datetime(mtime_ns: int) -> datetime | None:
    """A modification time as a datetime, or None if no datetime can hold it (year > 9999)."""
    try:
        return _EPOCH + timedelta(microseconds=mtime_ns // 1_000)
    except OverflowError:
        return None


def run_start(
    kind: str, user: AbstractBaseUser | None, report: CleanupReport, now: datetime
) -> CleanupRun:
    """The run's row, as the cleanup starts acting (``user`` None: the shared scratch)."""
    return CleanupRun.objects.create(
        kind=kind,
        user_id=user.pk if user is not None else None,
        started_at=now,
        dry_run=report.dry_run,
        used_bytes=report.used_bytes,
        limit_bytes=report.limit_bytes,
        target_bytes=report.target_bytes,
    )


def run_finish(run: CleanupRun, report: CleanupReport) -> None:
    """What the run did in all."""
    CleanupRun.objects.filter(pk=run.pk).update(
        finished_at=timezone.now(),
        files_removed=report.files_removed,
        bytes_freed=report.bytes_freed,
        files_skipped=report.files_skipped,
        errors=report.errors,
        message=report.message,
    )


class Recorder:
    """Counts what a scratch cleanup removed and writes the removal records in batches,
    renewing the lease (if any) with each batch."""

    def __init__(
        self,
        report: CleanupReport,
        run: CleanupRun,
        rule: str,
        now: datetime,
        lease: Lease | None,
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
        mtime = mtime_datetime(entry.mtime_ns)
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

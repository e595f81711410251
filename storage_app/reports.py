"""What a cleanup, a retention pass and a sweep report: plain data with the lines that the
``storage_sweep`` command prints, the log shows and the admin's messages quote.

Nothing here writes: the services fill these in (:mod:`storage_app.scratch`,
:mod:`storage_app.retention`, :mod:`storage_app.sweep`); the history staff read later is in the
database (:mod:`storage_app.history`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.template.defaultfilters import filesizeformat

from storage_app.usage import AreaScan


def format_bytes(count: int | None) -> str:
    """A size for people (``1.5 MB``), ``?`` when unknown."""
    return "?" if count is None else str(filesizeformat(count)).replace("\xa0", " ")


def format_time(moment: datetime | None) -> str:
    """A moment for people, in UTC (``—`` when there is none)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if moment else "—"


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
                    f"modified {format_time(item.mtime)})"
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
            return f"retention: nothing to do (delete after {format_time(self.delete_after)})"
        verb = {
            "warned": "would warn" if self.dry_run else "warned",
            "postponed": "would warn and postpone" if self.dry_run else "warned and postponed",
            "deleted": "would delete the private storage"
            if self.dry_run
            else "deleted the private storage",
        }.get(self.action, self.action)
        return f"retention: {verb}" + (f": {self.detail}" if self.detail else "")


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
        lines = [f"Storage sweep at {format_time(self.started_at)}{mode}"]
        for user in self.users:
            lines.extend(user.lines())
        if self.shared is not None:
            lines.extend(self.shared.lines())
        else:
            lines.append("shared scratch: not checked (one user only)")
        if self.failures:
            lines.append(f"{len(self.failures)} user(s) failed; see the log.")
        return lines

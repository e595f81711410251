"""Staff see every account's usage, quotas, exemption and last scan; they override quotas, exempt
accounts, scan or clean up a user's scratch on demand, and read the cleanups' records."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from storage_app.lease import StorageBusy
from storage_app.models import CleanupRun, RemovalRecord, StorageAccount
from storage_app.reports import format_bytes
from storage_app.scratch import scratch_enforce_user
from storage_app.usage import storage_scan_user

# Running a cleanup now deletes files and counts toward a suspension by rule: its own
# permission (StorageAccount's Meta), beyond changing the account.
RUN_CLEANUP_PERMISSION = "storage_app.run_cleanup"


class _ReadOnly(admin.ModelAdmin):
    """Records of what cleanups did: never added, edited or deleted by hand."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(StorageAccount)
class StorageAccountAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "private_usage",
        "private_quota_effective",
        "scratch_usage",
        "scratch_quota_effective",
        "retention_exempt",
        "last_scan",
        "delete_after",
    ]
    list_filter = ["retention_exempt"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user"]
    actions = ["scan_now", "cleanup_now"]
    fieldsets = [
        (None, {"fields": ["user", "created_at"]}),
        (
            "Quotas (empty: the default)",
            {"fields": ["private_quota_bytes", "scratch_quota_bytes"]},
        ),
        (
            "Retention of the private storage",
            {
                "fields": [
                    "retention_exempt",
                    "retention_exempt_reason",
                    "last_session_at",
                    "delete_after",
                    "retention_warnings_sent",
                    "private_deleted_at",
                ]
            },
        ),
        (
            "Latest scan",
            {
                "fields": [
                    "private_usage",
                    "private_files",
                    "private_errors",
                    "private_measured_at",
                    "scratch_usage",
                    "scratch_files",
                    "scratch_errors",
                    "scratch_measured_at",
                ]
            },
        ),
    ]
    readonly_fields = [
        "user",
        "created_at",
        "last_session_at",
        "delete_after",
        "retention_warnings_sent",
        "private_deleted_at",
        "private_usage",
        "private_files",
        "private_errors",
        "private_measured_at",
        "scratch_usage",
        "scratch_files",
        "scratch_errors",
        "scratch_measured_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Every user gets an account from the sweep, a scan or their first session.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="private used", ordering="private_bytes")
    def private_usage(self, account: StorageAccount) -> str:
        return format_bytes(account.private_bytes) if account.private_bytes is not None else "—"

    @admin.display(description="private quota")
    def private_quota_effective(self, account: StorageAccount) -> str:
        suffix = "" if account.private_quota_bytes is None else " (override)"
        return format_bytes(account.private_quota) + suffix

    @admin.display(description="scratch used", ordering="scratch_bytes")
    def scratch_usage(self, account: StorageAccount) -> str:
        return format_bytes(account.scratch_bytes) if account.scratch_bytes is not None else "—"

    @admin.display(description="scratch quota")
    def scratch_quota_effective(self, account: StorageAccount) -> str:
        suffix = "" if account.scratch_quota_bytes is None else " (override)"
        return format_bytes(account.scratch_quota) + suffix

    @admin.display(description="last scan", ordering="scratch_measured_at")
    def last_scan(self, account: StorageAccount) -> Any:
        times = [t for t in (account.private_measured_at, account.scratch_measured_at) if t]
        return max(times) if times else None

    def has_run_cleanup_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_CLEANUP_PERMISSION)

    # A scan deletes nothing, but it rewrites the account's measured usage, which the quotas
    # and the retention rules act on: changing the account.
    @admin.action(description="Scan now", permissions=["change"])
    def scan_now(self, request: HttpRequest, queryset: QuerySet[StorageAccount]) -> None:
        for account in queryset.select_related("user"):
            usage = storage_scan_user(account.user)
            self.message_user(
                request,
                f"Scanned {account.user}: private {format_bytes(usage.private.bytes_used)} "
                f"({usage.private.files} files), scratch {format_bytes(usage.scratch.bytes_used)} "
                f"({usage.scratch.files} files)"
                + (
                    f"; {usage.private.errors + usage.scratch.errors} unreadable entries"
                    if usage.private.errors + usage.scratch.errors
                    else ""
                )
                + ".",
                messages.SUCCESS,
            )

    @admin.action(description="Run scratch cleanup now", permissions=["run_cleanup"])
    def cleanup_now(self, request: HttpRequest, queryset: QuerySet[StorageAccount]) -> None:
        for account in queryset.select_related("user"):
            try:
                report = scratch_enforce_user(account.user)
            except StorageBusy as exc:
                self.message_user(request, f"Cleanup of {account.user}: {exc}", messages.WARNING)
                return
            if not report.over:
                text = (
                    f"Cleanup of {account.user}: scratch {format_bytes(report.used_bytes)} is "
                    f"within its quota of {format_bytes(report.limit_bytes)}; nothing removed."
                )
            else:
                text = (
                    f"Cleanup of {account.user}: scratch {format_bytes(report.used_bytes)} was "
                    f"over its quota of {format_bytes(report.limit_bytes)}; removed "
                    f"{report.files_removed} file(s) ({format_bytes(report.bytes_freed)}), now "
                    f"{format_bytes(report.after_bytes)}."
                    + (f" {report.files_skipped} skipped." if report.files_skipped else "")
                    + (f" {report.message}" if report.message else "")
                )
            if report.future_mtimes:
                text += " Modification times in the future were found and reported."
            self.message_user(request, text, messages.SUCCESS)


@admin.register(RemovalRecord)
class RemovalRecordAdmin(_ReadOnly):
    list_display = ["removed_at", "user", "area", "path", "size_display", "mtime", "rule", "run"]
    list_filter = ["area", "rule", "removed_at"]
    search_fields = ["user__username", "user__email", "path"]
    list_select_related = ["user", "run"]
    date_hierarchy = "removed_at"
    fields = ["user", "run", "area", "path", "size", "mtime", "rule", "removed_at"]

    @admin.display(description="size", ordering="size")
    def size_display(self, record: RemovalRecord) -> str:
        return format_bytes(record.size)


@admin.register(CleanupRun)
class CleanupRunAdmin(_ReadOnly):
    list_display = [
        "started_at",
        "kind",
        "user",
        "dry_run",
        "files_removed",
        "freed",
        "files_skipped",
        "errors",
        "finished_at",
    ]
    list_filter = ["kind", "dry_run", "started_at"]
    search_fields = ["user__username", "user__email"]
    list_select_related = ["user"]
    date_hierarchy = "started_at"
    fields = [
        "kind",
        "user",
        "dry_run",
        "started_at",
        "finished_at",
        "used_bytes",
        "limit_bytes",
        "target_bytes",
        "files_removed",
        "bytes_freed",
        "files_skipped",
        "errors",
        "message",
    ]

    @admin.display(description="freed", ordering="bytes_freed")
    def freed(self, run: CleanupRun) -> str:
        return format_bytes(run.bytes_freed)

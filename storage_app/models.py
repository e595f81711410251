"""Storage accounts (quotas, retention, the latest measurements), cleanup runs and the record of
every file a cleanup removed."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q


class StorageAccount(models.Model):
    """One user's storage: quota overrides, the retention deadline and the latest scan.

    ``delete_after`` is the absolute deadline of the private storage (service rule 7): the last
    session start (or, before the first, the day this row was created) plus
    ``STORAGE_RETENTION_DAYS``. It is stored, not computed, so the warnings and the deletion
    agree on one date whatever the settings say later.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_account"
    )
    created_at = models.DateTimeField()
    private_quota_bytes = models.BigIntegerField(
        "private quota (bytes)",
        null=True,
        blank=True,
        help_text="Empty: the default (STORAGE_PRIVATE_QUOTA_BYTES).",
    )
    scratch_quota_bytes = models.BigIntegerField(
        "scratch quota (bytes)",
        null=True,
        blank=True,
        help_text="Empty: the default (STORAGE_SCRATCH_QUOTA_BYTES).",
    )
    retention_exempt = models.BooleanField(
        default=False, help_text="Never delete this user's private storage for lack of use."
    )
    retention_exempt_reason = models.CharField(
        max_length=300, blank=True, help_text="Why the account is exempt (required if it is)."
    )
    last_session_at = models.DateTimeField(null=True, blank=True)
    delete_after = models.DateTimeField(
        help_text="The private storage is deleted after this moment unless a session is started."
    )
    # The warning thresholds (days before delete_after) already sent for this deadline; a new
    # deadline (a session start) empties it.
    retention_warnings_sent = models.JSONField(default=list, blank=True)
    private_deleted_at = models.DateTimeField(
        null=True, blank=True, help_text="When the private storage was deleted for lack of use."
    )

    # The latest measurement of each area (a scan): bytes allocated on disk, regular files,
    # entries that could not be read. None: never measured.
    private_bytes = models.BigIntegerField(null=True, blank=True)
    private_files = models.BigIntegerField(null=True, blank=True)
    private_errors = models.IntegerField(default=0)
    private_measured_at = models.DateTimeField(null=True, blank=True)
    scratch_bytes = models.BigIntegerField(null=True, blank=True)
    scratch_files = models.BigIntegerField(null=True, blank=True)
    scratch_errors = models.IntegerField(default=0)
    scratch_measured_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["user__username"]
        constraints = [
            models.CheckConstraint(
                condition=Q(private_quota_bytes__isnull=True) | Q(private_quota_bytes__gte=0),
                name="storage_private_quota_not_negative",
                violation_error_message="The private quota cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(scratch_quota_bytes__isnull=True) | Q(scratch_quota_bytes__gte=0),
                name="storage_scratch_quota_not_negative",
                violation_error_message="The scratch quota cannot be negative.",
            ),
            models.CheckConstraint(
                condition=Q(retention_exempt=False) | ~Q(retention_exempt_reason=""),
                name="storage_exemption_needs_reason",
                violation_error_message="Say why the account is exempt from deletion.",
            ),
        ]
        indexes = [models.Index(fields=["delete_after"], name="storage_account_deadline")]
        # Beyond the model's own: a cleanup deletes the user's files and counts toward a
        # suspension by rule, so it is not part of changing the account.
        permissions = [("run_cleanup", "Can run a scratch cleanup now")]

    def __str__(self) -> str:
        return f"storage of {self.user}"

    @property
    def private_quota(self) -> int:
        """The effective private quota: the override, else the default."""
        if self.private_quota_bytes is not None:
            return self.private_quota_bytes
        return int(settings.STORAGE_PRIVATE_QUOTA_BYTES)

    @property
    def scratch_quota(self) -> int:
        if self.scratch_quota_bytes is not None:
            return self.scratch_quota_bytes
        return int(settings.STORAGE_SCRATCH_QUOTA_BYTES)


class CleanupRun(models.Model):
    """One cleanup that acted (or, in a dry run, would have): what it found and what it did."""

    class Kind(models.TextChoices):
        SCRATCH_USER = "scratch_user", "scratch quota of one user"
        SCRATCH_SHARED = "scratch_shared", "shared scratch maximum"
        PRIVATE_RETENTION = "private_retention", "private storage retention"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="storage_cleanup_runs",
        help_text="Empty for the shared scratch cleanup (all users).",
    )
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    dry_run = models.BooleanField(default=False)
    used_bytes = models.BigIntegerField(default=0, help_text="Usage found before the cleanup.")
    limit_bytes = models.BigIntegerField(default=0, help_text="The quota or maximum exceeded.")
    target_bytes = models.BigIntegerField(default=0, help_text="The low-water mark aimed for.")
    files_removed = models.BigIntegerField(default=0)
    bytes_freed = models.BigIntegerField(
        default=0, help_text="Allocated bytes of the removed files (what quotas count)."
    )
    files_skipped = models.BigIntegerField(
        default=0, help_text="Selected files that had changed or vanished: left alone."
    )
    errors = models.IntegerField(default=0)
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["user", "started_at"], name="cleanup_run_user_time")]

    def __str__(self) -> str:
        who = self.user if self.user_id else "all users"
        return f"{self.get_kind_display()} ({who}) at {self.started_at:%Y-%m-%d %H:%M}"


class RemovalRecord(models.Model):
    """A file (or, for retention, a whole private storage) that a cleanup removed.

    ``path`` is relative to the area's root (the user's scratch or private folder). File names
    need not be UTF-8: bytes that are not valid UTF-8, control characters and the backslash
    are written as ``\\xNN`` escapes (see ``storage_app.fs_types.path_text``), so the text is
    unambiguous and safe to store and show.
    """

    class Area(models.TextChoices):
        PRIVATE = "private", "private"
        SCRATCH = "scratch", "scratch"

    class Rule(models.TextChoices):
        SCRATCH_QUOTA_LARGEST = "scratch_quota_largest", "scratch quota: largest files first"
        SCRATCH_QUOTA_OLDEST = "scratch_quota_oldest", "scratch quota: oldest files first"
        SCRATCH_SHARED_LRU = "scratch_shared_lru", "shared scratch full: least recently modified"
        PRIVATE_RETENTION = "private_retention", "private storage unused for too long"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="storage_removals"
    )
    run = models.ForeignKey(CleanupRun, on_delete=models.CASCADE, related_name="removals")
    area = models.CharField(max_length=16, choices=Area.choices)
    path = models.TextField()
    size = models.BigIntegerField(help_text="Bytes (for a whole private storage: allocated).")
    mtime = models.DateTimeField(
        "modified", null=True, blank=True, help_text="Empty when not representable."
    )
    rule = models.CharField(max_length=32, choices=Rule.choices)
    removed_at = models.DateTimeField()

    class Meta:
        ordering = ["-removed_at", "-id"]
        indexes = [models.Index(fields=["user", "removed_at"], name="removal_user_time")]

    def __str__(self) -> str:
        return f"{self.user}: {self.area}/{self.path}"


class StorageLock(models.Model):
    """A lease that one process holds while it removes scratch files.

    Two cleanups that overlap would each count only their own removals and together remove
    more than the rules select; so scratch cleanups (the sweep, a staff "cleanup now") take
    this lease first. It expires, so a worker that died does not block cleanups forever.
    """

    name = models.CharField(max_length=64, unique=True)
    holder = models.CharField(max_length=64)
    expires_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} held until {self.expires_at:%Y-%m-%d %H:%M:%S}"

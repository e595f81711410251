from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

# The permission to reinstate (lift) a suspension; the admin and the staff API ask for it.
LIFT_PERMISSION = "suspension_app.lift_suspension"


class Suspension(models.Model):
    """A user's suspension (service rule 11), imposed by staff or a rule, lifted by staff.

    Rows are never deleted: together they are the record of who suspended whom, when, why, on
    which evidence, and who reinstated them after which investigation.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="suspensions"
    )
    created_at = models.DateTimeField("since")
    imposed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="suspensions_imposed",
        help_text="The staff member who suspended the user (empty when a rule did).",
    )
    rule = models.CharField(
        max_length=64, blank=True, help_text="The rule that suspended the user (empty for staff)."
    )
    reason = models.TextField(help_text="Shown to the user and sent to them by e-mail.")
    evidence = models.JSONField(default=dict, blank=True)
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="suspensions_lifted",
    )
    investigation_note = models.TextField(
        blank=True, help_text="Internal: what staff found. Not sent to the user."
    )

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("lift_suspension", "Can reinstate a suspended user")]
        constraints = [
            # Also the index behind suspension_active_for: one lookup per request.
            models.UniqueConstraint(
                fields=["user"],
                condition=Q(lifted_at__isnull=True),
                name="one_active_suspension_per_user",
                violation_error_message="This user is already suspended.",
            ),
            models.CheckConstraint(
                condition=(Q(imposed_by__isnull=False) & Q(rule=""))
                | (Q(imposed_by__isnull=True) & ~Q(rule="")),
                name="suspension_imposed_by_staff_xor_rule",
                violation_error_message="A suspension is imposed either by staff or by a rule.",
            ),
            models.CheckConstraint(
                condition=~Q(reason=""),
                name="suspension_reason_not_empty",
                violation_error_message="A suspension needs a reason.",
            ),
            models.CheckConstraint(
                condition=Q(lifted_at__isnull=True, lifted_by__isnull=True)
                | (Q(lifted_at__isnull=False, lifted_by__isnull=False) & ~Q(investigation_note="")),
                name="suspension_lift_needs_staff_and_note",
                violation_error_message="A suspension is lifted by staff, with an investigation "
                "note.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} since {self.created_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None

    @property
    def imposed_by_display(self) -> str:
        """Who suspended the user: a staff member's username or ``rule <name>``."""
        if self.rule:
            return f"rule {self.rule}"
        return self.imposed_by.get_username() if self.imposed_by else "?"


class RuleEvent(models.Model):
    """Something another part of the portal reported about a user, which rules may act on."""

    class Kind(models.TextChoices):
        SCRATCH_QUOTA_EXCEEDED = "scratch_quota_exceeded", "scratch quota exceeded"
        CLEANUP_CIRCUMVENTION = "cleanup_circumvention", "attempt to circumvent a cleanup"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="suspension_rule_events"
    )
    kind = models.CharField(max_length=32, choices=Kind.choices)
    occurred_at = models.DateTimeField()
    details = models.JSONField(default=dict, blank=True)
    suspension = models.ForeignKey(
        Suspension,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="events",
        help_text="The suspension this event led to, or the one in force when it happened. "
        "Linked events no longer count towards a rule's threshold.",
    )

    class Meta:
        ordering = ["-occurred_at", "-id"]
        indexes = [
            models.Index(fields=["user", "kind", "occurred_at"], name="rule_event_user_kind_time")
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.get_kind_display()} at {self.occurred_at:%Y-%m-%d %H:%M}"

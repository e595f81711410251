from __future__ import annotations

from django.conf import settings
from django.db import models


class TermsVersion(models.Model):
    """One version of the terms of use. The current version is the latest published one."""

    version = models.CharField(max_length=32, unique=True)
    title = models.CharField(max_length=200)
    body = models.TextField(
        help_text=(
            "The terms users agree to before launching, in Markdown. A new installation "
            "publishes a default text (version 1) written from the service page. To replace it, "
            "add a new version with your own text and set its publication time: the latest "
            "published version is the current one, and everyone accepts it before their next "
            "launch. A published version can no longer be edited: it is what people agreed to."
        )
    )
    published_at = models.DateTimeField(
        null=True,
        blank=True,
        db_index=True,
        help_text="Empty while a draft. From then on, everyone accepts again before launching.",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-published_at", "-id"]

    def __str__(self) -> str:
        return f"{self.version}: {self.title}"


class TermsAcceptance(models.Model):
    """A user's agreement to one version, kept for the record (never deleted)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="terms_acceptances"
    )
    version = models.ForeignKey(TermsVersion, on_delete=models.PROTECT, related_name="acceptances")
    accepted_at = models.DateTimeField()
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.TextField(blank=True)

    class Meta:
        ordering = ["-accepted_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "version"], name="terms_one_acceptance_per_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.user} accepted {self.version.version} at {self.accepted_at:%Y-%m-%d %H:%M}"

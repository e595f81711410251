"""Who signed in from where, and every reset of a second factor."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class OidcIdentity(models.Model):
    """Links a portal user to the provider's subject (``sub``): usernames and e-mail
    addresses may change at the provider, the subject does not."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="oidc_identity"
    )
    subject = models.CharField(max_length=255, unique=True)
    created_at = models.DateTimeField()
    last_login_at = models.DateTimeField()
    claims = models.JSONField(default=dict, help_text="The claims of the latest sign-in.")

    class Meta:
        verbose_name = "OIDC identity"
        verbose_name_plural = "OIDC identities"

    def __str__(self) -> str:
        return f"{self.user} ({self.subject})"


class SecondFactorEstablished(models.Model):
    """The user has passed a second factor here at least once (a code, a backup code or the
    provider's multi-factor claim). From then on an account without an authenticator can't
    set one up on its own: that takes a backup code or staff (a reset clears this row)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="second_factor_established"
    )
    established_at = models.DateTimeField()
    method = models.CharField(max_length=20)

    def __str__(self) -> str:
        return f"{self.user}: {self.method} since {self.established_at:%Y-%m-%d %H:%M}"


class SecondFactorReset(models.Model):
    """A second factor removed, by its owner with a backup code or by staff."""

    class Method(models.TextChoices):
        BACKUP_CODE = "backup_code", "by the user, with a backup code"
        STAFF = "staff", "by staff"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="second_factor_resets"
    )
    method = models.CharField(max_length=20, choices=Method.choices)
    reset_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reset_at = models.DateTimeField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-reset_at"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(method="staff") | models.Q(reset_by__isnull=False),
                name="staff_reset_names_staff",
            )
        ]

    def __str__(self) -> str:
        return f"{self.user}: {self.get_method_display()} at {self.reset_at:%Y-%m-%d %H:%M}"

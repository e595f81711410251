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


class SignInFailures(models.Model):
    """Recent wrong passwords for one account name (as typed, hashed) or one client address,
    and until when the next attempt from it waits (``accounts_app/sign_in_throttle.py``)."""

    class Scope(models.TextChoices):
        ACCOUNT = "account", "account name"
        ADDRESS = "address", "client address"

    scope = models.CharField(max_length=10, choices=Scope.choices)
    key = models.CharField(
        max_length=64, help_text="SHA-256 of the account name as typed, or the address."
    )
    failures = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField()
    locked_until = models.DateTimeField()

    class Meta:
        verbose_name = "sign-in failures"
        verbose_name_plural = "sign-in failures"
        constraints = [
            models.UniqueConstraint(fields=["scope", "key"], name="sign_in_failures_unique_key")
        ]
        indexes = [models.Index(fields=["last_failure_at"], name="sign_in_failures_last")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key[:12]}: {self.failures} until {self.locked_until:%H:%M:%S}"

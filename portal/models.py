from __future__ import annotations

from django.conf import settings
from django.db import models


class ApiToken(models.Model):
    """A bearer token for REST clients. Only its SHA-256 digest is stored.

    Every token expires (``API_TOKEN_DAYS`` unless its owner chose a lifetime, at most
    ``API_TOKEN_MAX_DAYS``); it is revoked by its owner, by staff, or by the portal when the
    account's password changes, staff reset its second factor, or a rule suspends it.
    """

    class RevokedBecause(models.TextChoices):
        OWNER = "owner", "by its owner"
        STAFF = "staff", "by staff"
        PASSWORD_CHANGED = "password_changed", "the password changed"
        SECOND_FACTOR_RESET = "second_factor_reset", "staff reset the second factor"
        SUSPENDED = "suspended", "a rule suspended the account"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100, blank=True)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise it.")
    digest = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField(help_text="The token stops working at this time.")
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_because = models.CharField(
        max_length=32, choices=RevokedBecause.choices, blank=True, default=""
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"

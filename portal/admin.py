from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from portal.admin_secrets import SecretFieldsAdmin
from portal.models import ApiToken
from portal.tokens import token_revoke


@admin.register(ApiToken)
class ApiTokenAdmin(SecretFieldsAdmin):
    secret_fields = ("digest",)
    list_display = [
        "prefix",
        "user",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
    ]
    search_fields = ["user__username", "prefix", "name"]
    readonly_fields = [
        "user",
        "prefix",
        "name",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_because",
    ]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Tokens are issued with `manage.py issue_token`, which shows the secret once.
        return False

    # Revoking ends the token's use as surely as deleting it: the same permission.
    @admin.action(description="Revoke the selected tokens", permissions=["delete"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            token_revoke(token, because=ApiToken.RevokedBecause.STAFF)

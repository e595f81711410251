from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from terms_app.models import TermsAcceptance, TermsVersion


@admin.register(TermsVersion)
class TermsVersionAdmin(admin.ModelAdmin):
    list_display = ["version", "title", "published_at", "created_at"]
    search_fields = ["version", "title"]

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        # A published version is what people agreed to: its text can no longer change.
        if obj is not None and obj.published_at is not None:
            return ["version", "title", "body", "published_at"]
        return []


@admin.register(TermsAcceptance)
class TermsAcceptanceAdmin(admin.ModelAdmin):
    """The record of acceptances: read-only, never deleted."""

    list_display = ["user", "version", "accepted_at", "ip_address"]
    list_filter = ["version"]
    search_fields = ["user__username", "user__email", "ip_address"]
    list_select_related = ["user", "version"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

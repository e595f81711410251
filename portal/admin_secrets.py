"""Admin pages never filter on a secret: Django lets a changelist's query string filter on any
of the model's own fields (``?spawner_state__token__startswith=gS``), and the count of results
would read a secret out one character at a time."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest


class SecretFieldsAdmin(admin.ModelAdmin):
    """A model admin with fields that hold secrets: no lookup through them (400)."""

    secret_fields: tuple[str, ...] = ()

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest) -> Any:
        if lookup.split("__", 1)[0] in self.secret_fields:
            return False  # the admin answers DisallowedModelAdminLookup: 400
        return super().lookup_allowed(lookup, value, request)

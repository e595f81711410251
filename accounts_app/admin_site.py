"""The admin site: staff who passed the second factor and are not suspended."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from accounts_app.pages import refusal_page
from accounts_app.policy import Refusal, access_refusal
from accounts_app.second_factor import second_factor_passed

STAFF_ONLY = Refusal("staff_only", "The administration pages are for the operator's staff.")


class PortalAdminSite(admin.AdminSite):
    site_header = "Jupyter launcher portal administration"
    site_title = "Jupyter launcher portal"
    # The index adds what isolates local sessions (single-user mode is said loudly).
    index_template = "admin/portal_index.html"

    def has_permission(self, request: HttpRequest) -> bool:
        return (
            super().has_permission(request)
            and second_factor_passed(request)
            and access_refusal(request.user) is None
        )

    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # Anonymous people and missing second factors never get here: the access middleware
        # sends them to the portal's sign-in and second-factor pages (no admin password form,
        # no redirect loop). Who arrives is signed in and verified, but not staff.
        if self.has_permission(request):
            # Staff following an old link to the admin's sign-in page.
            return HttpResponseRedirect(reverse("admin:index", current_app=self.name))
        refusal = access_refusal(request.user) or STAFF_ONLY
        return refusal_page(request, refusal)

"""Pages the guards show instead of the one asked for."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from accounts_app.policy import Refusal


def refusal_page(request: HttpRequest, refusal: Refusal) -> HttpResponse:
    return render(
        request,
        "accounts/refused.html",
        {
            "refusal": refusal,
            "suspension": refusal.suspension,
            "appeal_contact": settings.SUSPENSION_APPEAL_CONTACT,
        },
        status=403,
    )

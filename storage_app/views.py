"""Web page of the user's storage: usage against quotas, the retention date, the history."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import AbstractBaseUser
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from storage_app.selectors import storage_overview, storage_removals, storage_warnings_for

HISTORY_PAGE_SIZE = 50


@login_required
@require_GET
def storage_page(request: HttpRequest) -> HttpResponse:
    """Private and scratch usage against their quotas, when the private storage will be
    deleted if unused, and every file a cleanup removed (paginated)."""
    user = request.user
    assert isinstance(user, AbstractBaseUser)  # login_required
    history = Paginator(storage_removals(user), HISTORY_PAGE_SIZE).get_page(request.GET.get("page"))
    return render(
        request,
        "storage_app/storage.html",
        {
            "overview": storage_overview(user),
            "warnings": storage_warnings_for(user),
            "history": history,
            "scratch_policy": settings.STORAGE_SCRATCH_POLICY,
            "scratch_low_water_percent": round(settings.STORAGE_SCRATCH_LOW_WATER * 100),
        },
    )

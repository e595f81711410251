"""Web page of the terms of use."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from terms_app.rendering import render_terms_markdown
from terms_app.selectors import terms_current, terms_has_accepted


@login_required
@require_GET
def terms_page(request: HttpRequest) -> HttpResponse:
    """The current terms, rendered, with their version and whether the user accepted them."""
    current = terms_current()
    return render(
        request,
        "terms/terms.html",
        {
            "terms": current,
            "body_html": render_terms_markdown(current.body) if current else "",
            "accepted": current is not None and terms_has_accepted(request.user, current),
        },
    )

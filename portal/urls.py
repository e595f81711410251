from __future__ import annotations

from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path, re_path
from django.urls.resolvers import RegexPattern, RoutePattern

from portal import api_urls, health, metrics

# JSON under /api/, the pages' HTML elsewhere; an outage met outside a view (the session and
# user lookup) answers 503 (portal/api_errors.py, portal/outage.py).
handler400 = "portal.api_errors.bad_request"
handler403 = "portal.api_errors.permission_denied"
handler404 = "portal.api_errors.page_not_found"
handler500 = "portal.api_errors.server_error"


def _without_slash(pattern: URLPattern) -> URLPattern | None:
    """``pattern``'s twin without the trailing slash, of the same name (so that logs, metrics
    and the authorization matrix see one endpoint); None if it has no slash to drop."""
    route = pattern.pattern
    if isinstance(route, RoutePattern) and str(route).endswith("/"):
        return path(str(route)[:-1], pattern.callback, pattern.default_args, pattern.name)
    if isinstance(route, RegexPattern) and str(route).endswith("/$"):
        return re_path(str(route)[:-2] + "$", pattern.callback, pattern.default_args, pattern.name)
    return None


def slash_optional(patterns: list[URLPattern | URLResolver]) -> list[URLPattern | URLResolver]:
    """Each endpoint with and without its trailing slash. APPEND_SLASH would redirect
    ``POST /api/v1/session`` with a 301, which clients follow as a GET: the API answers both
    forms itself instead. Each twin comes before its original: of patterns with one name,
    ``reverse`` gives the last, the slashed form. The schema lists that form only
    (``portal.api_openapi``)."""
    both: list[URLPattern | URLResolver] = []
    for pattern in patterns:
        twin = _without_slash(pattern) if isinstance(pattern, URLPattern) else None
        if twin is not None:
            both.append(twin)
        both.append(pattern)
    return both


urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("accounts_app.urls")),
    path("api/v1/", include(slash_optional(api_urls.urlpatterns))),
    path("", include("sessions_app.urls")),
    path("terms/", include("terms_app.urls")),
    path("storage/", include("storage_app.urls")),
]

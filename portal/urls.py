from django.contrib import admin
from django.urls import include, path

from portal import health, metrics

# An outage met outside a view (the session and user lookup) answers 503 (portal/outage.py).
handler500 = "portal.outage.server_error"

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("accounts_app.urls")),
    path("api/v1/", include("portal.api_urls")),
    path("", include("sessions_app.urls")),
    path("terms/", include("terms_app.urls")),
    path("storage/", include("storage_app.urls")),
]

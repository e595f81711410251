"""URLs of REST API v1 (``/api/v1/``)."""

from django.urls import URLPattern, URLResolver, path

from accounts_app import api as accounts_api
from accounts_app import api_admin as accounts_admin_api
from portal.api_schema import SchemaView
from sessions_app import api as sessions_api
from sessions_app import api_admin as sessions_admin_api
from sessions_app import live as sessions_live
from storage_app import api as storage_api
from suspension_app import api as suspension_api
from terms_app import api as terms_api

urlpatterns: list[URLPattern | URLResolver] = [
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("environments/", sessions_api.EnvironmentListView.as_view(), name="api-environments"),
    path("terms/current/", terms_api.CurrentTermsView.as_view(), name="api-terms-current"),
    path("terms/accept/", terms_api.AcceptTermsView.as_view(), name="api-terms-accept"),
    # The long poll (?wait=N) waits in an async view; the rest is SessionView.
    path("session/", sessions_live.api_session, name="api-session"),
    path("sessions/", sessions_api.SessionHistoryView.as_view(), name="api-sessions"),
    path(
        "sessions/<uuid:session_id>/",
        sessions_api.SessionDetailView.as_view(),
        name="api-session-detail",
    ),
    path("storage/", storage_api.StorageView.as_view(), name="api-storage"),
    path("storage/removals/", storage_api.RemovalListView.as_view(), name="api-storage-removals"),
    path("tokens/", accounts_api.TokenListView.as_view(), name="api-tokens"),
    path("tokens/<int:token_id>/", accounts_api.TokenDetailView.as_view(), name="api-token"),
    path(
        "admin/suspensions/",
        suspension_api.SuspensionListView.as_view(),
        name="api-admin-suspensions",
    ),
    path(
        "admin/suspensions/<int:pk>/",
        suspension_api.SuspensionDetailView.as_view(),
        name="api-admin-suspension",
    ),
    path(
        "admin/suspensions/<int:pk>/lift/",
        suspension_api.SuspensionLiftView.as_view(),
        name="api-admin-suspension-lift",
    ),
    path(
        "admin/sessions/",
        sessions_admin_api.AdminSessionListView.as_view(),
        name="api-admin-sessions",
    ),
    path(
        "admin/sessions/<uuid:session_id>/stop/",
        sessions_admin_api.AdminSessionStopView.as_view(),
        name="api-admin-session-stop",
    ),
    path("admin/users/", accounts_admin_api.AdminUserListView.as_view(), name="api-admin-users"),
    path("admin/usage/", sessions_admin_api.UsageView.as_view(), name="api-admin-usage"),
    path("admin/queue/", sessions_admin_api.QueueListView.as_view(), name="api-admin-queue"),
    path(
        "admin/queue/<uuid:session_id>/",
        sessions_admin_api.QueueEntryView.as_view(),
        name="api-admin-queue-entry",
    ),
    path(
        "admin/queue/<uuid:session_id>/move/",
        sessions_admin_api.QueueMoveView.as_view(),
        name="api-admin-queue-move",
    ),
]

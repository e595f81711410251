"""URLs of the session pages, included at the site root."""

from __future__ import annotations

from django.urls import path

from sessions_app import history, live, views

urlpatterns = [
    path("", views.launcher, name="launcher"),
    path("session/", views.session_page, name="session"),
    path("session/status/", views.session_status, name="session-status"),
    path("session/events/", live.session_events_stream, name="session-events"),
    path("session/stop/", views.session_stop, name="session-stop"),
    path("usage/", views.usage_page, name="usage"),
    path("sessions/", history.history_list, name="session-history"),
    path("sessions/<uuid:session_id>/", history.history_detail, name="session-history-detail"),
    # Forward-auth for the routers: never reachable from outside (nginx and the Ingress
    # route no /auth/ path; docs/architecture.md, "Routing").
    path("auth/session/<uuid:session_id>/", views.session_route_auth, name="session-route-auth"),
    path("auth/route/", views.route_auth, name="route-auth"),
    path("auth/route/refusal/", views.route_refusal, name="route-refusal"),
]

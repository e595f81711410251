"""Sign-in, sign-out, the provider's round trip, the second factor and the account page."""

from __future__ import annotations

from django.urls import path

from accounts_app import views
from accounts_app.access import public_view
from accounts_app.oidc import PortalAuthenticationRequestView, PortalCallbackView

urlpatterns = [
    path("login/", views.login_view, name="login"),
    path("login/failed/", views.login_failed, name="login-failed"),
    path("logout/", views.logout_view, name="logout"),
    path(
        "oidc/authenticate/",
        public_view(PortalAuthenticationRequestView.as_view()),
        name="oidc_authentication_init",
    ),
    path(
        "oidc/callback/",
        public_view(PortalCallbackView.as_view()),
        name="oidc_authentication_callback",
    ),
    # mozilla-django-oidc's name for sign-out (its session refresh leaves it alone).
    path("oidc/logout/", views.logout_view, name="oidc_logout"),
    path("account/", views.account, name="account"),
    path("account/tokens/", views.token_create, name="token-create"),
    path("account/tokens/<int:token_id>/revoke/", views.token_revoke_view, name="token-revoke"),
    path("account/backup-codes/", views.backup_codes_new, name="backup-codes-new"),
    path("account/second-factor/", views.second_factor, name="second-factor"),
    path("account/second-factor/setup/", views.second_factor_setup, name="second-factor-setup"),
    path("account/second-factor/reset/", views.second_factor_reset, name="second-factor-reset"),
]

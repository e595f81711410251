"""URLs of the test identity provider: the OpenID Connect endpoints at the root (so the
issuer is the bare ``http://127.0.0.1:<port>``), its login page, and the control endpoints."""

from __future__ import annotations

from django.contrib.auth.views import LoginView
from django.urls import include, path

from tests.idp import control

urlpatterns = [
    path("accounts/login/", LoginView.as_view(), name="login"),
    path("_control/users/", control.users, name="control-users"),
    path("_control/client/", control.client, name="control-client"),
    path("", include("oidc_provider.urls", namespace="oidc_provider")),
]

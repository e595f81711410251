"""A provider session whose ID token expired cannot write, by page or API, and a refused re-check
signs the person out."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from rest_framework.test import APIClient

from accounts_app.oidc import (
    REFUSAL_SESSION_KEY,
    PortalCallbackView,
)
from accounts_app.second_factor import SESSION_KEY
from portal.models import ApiToken

pytestmark = pytest.mark.django_db


OIDC_BACKEND = "accounts_app.oidc.PortalOidcBackend"


@pytest.fixture
def oidc_settings(settings: Any) -> Any:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "http://idp.invalid/authorize"
    return settings


def _stale_provider_session(client: Client, user: User) -> None:
    client.force_login(user, backend=OIDC_BACKEND)
    session = client.session
    session[SESSION_KEY] = "provider"
    session["oidc_id_token_expiration"] = time.time() - 1
    session.save()


def test_a_stale_provider_session_cannot_write_pages(
    client: Client, oidc_settings: Any, owner: User
) -> None:
    _stale_provider_session(client, owner)

    response = client.post("/account/tokens/", {"name": "x"})

    assert response.status_code == 302 and response["Location"] == "/account/tokens/"
    assert not ApiToken.objects.exists()


def test_a_stale_provider_session_cannot_use_the_api(oidc_settings: Any, owner: User) -> None:
    client = APIClient()
    _stale_provider_session(client, owner)

    response = client.post("/api/v1/tokens/", {"name": "x"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "reauthentication_required"
    assert not ApiToken.objects.exists()


def test_a_refused_re_check_signs_the_person_out(oidc_settings: Any, staff: User) -> None:
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    request.session[REFUSAL_SESSION_KEY] = {"code": "access_denied", "message": "Not open."}
    request.user = staff
    request.session["_auth_user_id"] = str(staff.pk)
    view = PortalCallbackView()
    view.request = request

    response = view.login_failure()

    assert response["Location"] == "/login/failed/"
    assert isinstance(request.user, AnonymousUser)
    assert request.session[REFUSAL_SESSION_KEY]["code"] == "access_denied"

"""The sign-in page: local accounts in the embedded default; with OIDC on, the provider's
button and no password form unless LOCAL_LOGIN turns it back on (break-glass staff)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


@pytest.fixture
def oidc_settings(settings: Any) -> Any:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "http://idp.invalid/authorize"
    settings.LOCAL_LOGIN = False
    return settings


def test_embedded_default_has_only_the_password_form(client: Client) -> None:
    page = client.get("/login/").content.decode()

    assert 'name="password"' in page
    assert "Sign in with" not in page


def test_with_oidc_the_password_form_is_gone_and_refused(
    client: Client, oidc_settings: Any, owner: User
) -> None:
    page = client.get("/login/").content.decode()
    assert "Sign in with" in page and 'name="password"' not in page

    response = client.post("/login/", {"username": "owner", "password": PASSWORD})

    assert response.status_code == 403
    assert "turned off" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_local_login_can_stay_on_beside_oidc_for_break_glass_staff(
    client: Client, oidc_settings: Any, staff: User
) -> None:
    oidc_settings.LOCAL_LOGIN = True

    response = client.post("/login/", {"username": "staff", "password": PASSWORD})

    assert response.status_code == 302
    assert response["Location"].startswith("/account/second-factor/")


def test_the_provider_button_starts_the_code_flow(client: Client, oidc_settings: Any) -> None:
    response = client.get("/oidc/authenticate/?next=/session/")

    assert response.status_code == 302
    location = response["Location"]
    assert location.startswith("http://idp.invalid/authorize?")
    assert "response_type=code" in location and "code_challenge=" in location


def test_a_sign_in_that_did_not_complete_says_so(client: Client) -> None:
    response = client.get("/login/failed/")

    assert response.status_code == 401
    assert "Sign-in did not complete" in response.content.decode()


def test_next_cannot_send_people_to_another_site(client: Client, owner: User) -> None:
    client.post("/login/", {"username": "owner", "password": PASSWORD})
    session = client.session
    session["portal_second_factor"] = "totp"
    session.save()

    response = client.get("/account/second-factor/?next=https://evil.example/")

    assert response["Location"] == "/"

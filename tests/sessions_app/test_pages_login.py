"""Logging in and out, and the header every page shares."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from sessions_app.models import Environment
from tests.conftest import PASSWORD, SECOND_FACTOR_SESSION_KEY, login_verified

pytestmark = pytest.mark.django_db


def test_login_page_is_a_plain_form(client: Client) -> None:
    response = client.get("/login/?next=/session/")

    assert response.status_code == 200
    page = response.content.decode()
    assert '<form method="post" action="/login/" class="stacked-form">' in page
    assert 'name="username"' in page
    assert 'name="password"' in page
    assert '<input type="hidden" name="next" value="/session/">' in page
    assert "Sign out" not in page


def test_login_leads_to_the_second_factor_then_the_launcher(
    client: Client, owner: User, environment: Environment
) -> None:
    response = client.post("/login/", {"username": "owner", "password": PASSWORD}, follow=True)

    # No authenticator yet: the set-up comes first (its own tests go through it).
    assert response.redirect_chain == [
        ("/account/second-factor/?next=%2F", 302),
        ("/account/second-factor/setup/?next=%2F", 302),
    ]
    session = client.session
    session[SECOND_FACTOR_SESSION_KEY] = "totp"
    session.save()
    assert "Select an Environment" in client.get("/").content.decode()


def test_wrong_password_is_refused_with_a_message(client: Client, owner: User) -> None:
    response = client.post("/login/", {"username": "owner", "password": "wrong"})

    assert response.status_code == 200
    assert "Please enter a correct username and password." in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_header_shows_user_links_and_a_logout_form(
    client: Client, owner: User, environment: Environment
) -> None:
    login_verified(client, owner)

    page = client.get("/").content.decode()

    assert '<span class="user-name">owner</span>' in page
    assert '<a href="/" aria-current="page">Launcher</a>' in page
    assert '<a href="/session/">Session</a>' in page
    assert '<a href="/terms/">Terms</a>' in page
    assert "/admin/" not in page
    assert '<form method="post" action="/logout/" class="inline-form">' in page


def test_header_links_staff_to_the_admin(
    client: Client, staff: User, environment: Environment
) -> None:
    login_verified(client, staff)

    page = client.get("/").content.decode()

    assert '<a href="/admin/" class="admin-link">Admin</a>' in page


def test_logout_form_logs_out(client: Client, owner: User) -> None:
    login_verified(client, owner)

    response = client.post("/logout/")

    assert response.status_code == 302
    assert response["Location"] == "/login/"
    assert client.get("/")["Location"] == "/login/?next=/"

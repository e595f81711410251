"""Portal tokens are made from a browser session that passed the second factor, never with a
token; each user sees and revokes only their own."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from portal.models import ApiToken
from portal.tokens import token_issue
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


def test_a_verified_session_creates_a_token_shown_once(api: APIClient, owner: User) -> None:
    response = api.post("/api/v1/tokens/", {"name": "my script"}, format="json")

    assert response.status_code == 201
    body = response.json()
    assert body["token"].startswith("jlp_") and body["name"] == "my script"
    listed = api.get("/api/v1/tokens/").json()["results"]
    assert [item["id"] for item in listed] == [body["id"]]
    assert "token" not in listed[0]
    # The new token works on its own.
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {body['token']}")
    assert bearer.get("/api/v1/session/").status_code == 404  # authenticated: no session yet


def test_a_token_cannot_make_tokens(owner: User) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token_issue(user=owner)}")

    response = client.post("/api/v1/tokens/", {"name": "more"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "session_required"
    assert ApiToken.objects.count() == 1


def test_a_session_without_the_second_factor_cannot_make_tokens(owner: User) -> None:
    client = APIClient()
    client.force_login(owner)

    response = client.post("/api/v1/tokens/", {"name": "x"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "second_factor_required"
    assert not ApiToken.objects.exists()


def test_a_too_long_name_is_a_clear_error_and_makes_nothing(api: APIClient) -> None:
    response = api.post("/api/v1/tokens/", {"name": "x" * 101}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("name:")
    assert not ApiToken.objects.exists()


def test_revoking_another_users_token_is_not_found(api: APIClient, other_user: User) -> None:
    raw = token_issue(user=other_user)
    token = ApiToken.objects.get()

    response = api.delete(f"/api/v1/tokens/{token.pk}/")

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert bearer.get("/api/v1/environments/").status_code == 200


def test_revoking_ones_own_token_stops_it(api: APIClient, owner: User) -> None:
    raw = token_issue(user=owner)
    token = ApiToken.objects.get()

    assert api.delete(f"/api/v1/tokens/{token.pk}/").status_code == 204

    bearer = APIClient()
    bearer.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert bearer.get("/api/v1/environments/").status_code == 401


def test_the_account_page_creates_and_revokes_tokens(client: Client, owner: User) -> None:
    login_verified(client, owner)

    created = client.post("/account/tokens/", {"name": "notebook"})

    assert created.status_code == 200
    page = created.content.decode()
    token = ApiToken.objects.get(user=owner)
    assert '<code id="new-token">jlp_' in page and "notebook" in page
    revoked = client.post(f"/account/tokens/{token.pk}/revoke/")
    assert revoked["Location"] == "/account/"
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_the_account_page_does_not_revoke_another_users_token(
    client: Client, owner: User, other_user: User
) -> None:
    token_issue(user=other_user)
    token = ApiToken.objects.get()
    login_verified(client, owner)

    response = client.post(f"/account/tokens/{token.pk}/revoke/")

    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None

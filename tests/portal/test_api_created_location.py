"""Every 201 of the API carries ``Location``: the address where the new thing can be read (a
launch's: tests/sessions_app/test_api_launch.py)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from portal.models import ApiToken
from suspension_app.models import Suspension
from terms_app.models import TermsVersion
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client(user: User) -> APIClient:
    client = APIClient()
    login_verified(client, user)
    return client


def test_a_new_token_is_located_at_its_own_address(api: APIClient, owner: User) -> None:
    response = api.post("/api/v1/tokens/", {"name": "laptop"}, format="json")

    assert response.status_code == 201
    token = ApiToken.objects.get(user=owner)
    assert response["Location"] == f"http://testserver/api/v1/tokens/{token.pk}/"


def test_a_new_suspension_is_located_where_staff_read_it(staff: User, other_user: User) -> None:
    client = _client(staff)

    response = client.post(
        "/api/v1/admin/suspensions/", {"user": "other", "reason": "Abuse."}, format="json"
    )

    assert response.status_code == 201
    suspension = Suspension.objects.get(user=other_user)
    assert response["Location"] == f"http://testserver/api/v1/admin/suspensions/{suspension.pk}/"
    shown = client.get(response["Location"])
    assert shown.status_code == 200
    assert shown.json() == response.json()


def test_an_unknown_suspension_is_a_404(staff: User) -> None:
    response = _client(staff).get("/api/v1/admin/suspensions/999999/")

    assert (response.status_code, response.json()["code"]) == (404, "suspension_not_found")


def test_an_acceptance_is_located_at_the_terms_it_accepted(
    api: APIClient, terms: TermsVersion
) -> None:
    response = api.post("/api/v1/terms/accept/", {"version": terms.version}, format="json")

    assert response.status_code == 201
    assert response["Location"] == "http://testserver/api/v1/terms/current/"
    assert api.get(response["Location"]).json()["accepted"] is True

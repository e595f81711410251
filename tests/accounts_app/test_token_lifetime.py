"""API tokens expire: a default and a maximum lifetime in settings, a lifetime chosen when a
token is made (API and account page), the expiry shown, and 401 ``token_expired`` after it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.test import APIClient

from portal.models import ApiToken
from portal.tokens import token_issue
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _bearer(raw: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    return client


@time_machine.travel(NOW, tick=False)
def test_a_token_made_without_a_lifetime_lives_the_default(api: APIClient) -> None:
    body = api.post("/api/v1/tokens/", {"name": "script"}, format="json").json()

    assert body["expires_at"] == "2026-05-31T09:00:00Z"  # 90 days
    listed = api.get("/api/v1/tokens/").json()["results"]
    assert listed[0]["expires_at"] == "2026-05-31T09:00:00Z"


@time_machine.travel(NOW, tick=False)
def test_a_token_lives_the_lifetime_asked_for(api: APIClient, settings: Any) -> None:
    settings.API_TOKEN_DAYS = 30

    body = api.post("/api/v1/tokens/", {"lifetime_days": 7}, format="json").json()
    default = api.post("/api/v1/tokens/", {}, format="json").json()

    assert body["expires_at"] == "2026-03-09T09:00:00Z"
    assert default["expires_at"] == "2026-04-01T09:00:00Z"


def test_a_lifetime_over_the_maximum_is_refused(api: APIClient, settings: Any) -> None:
    settings.API_TOKEN_MAX_DAYS = 100

    too_long = api.post("/api/v1/tokens/", {"lifetime_days": 101}, format="json")
    too_short = api.post("/api/v1/tokens/", {"lifetime_days": 0}, format="json")

    assert too_long.status_code == 400
    assert too_long.json()["detail"].startswith("lifetime_days:")
    assert "100" in too_long.json()["detail"]
    assert too_short.status_code == 400
    assert not ApiToken.objects.exists()


def test_an_expired_token_answers_401_token_expired(owner: User) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        raw = token_issue(user=owner, days=1)
        assert _bearer(raw).get("/api/v1/environments/").status_code == 200

        clock.shift(timedelta(days=1))
        response = _bearer(raw).get("/api/v1/environments/")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "This token expired at 2026-03-03 09:00 UTC: make a new one on your account "
        "page.",
        "code": "token_expired",
    }
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_expired_tokens_are_no_longer_listed(api: APIClient, owner: User) -> None:
    with time_machine.travel(NOW, tick=False) as clock:
        token_issue(user=owner, name="short", days=1)
        token_issue(user=owner, name="long", days=2)
        clock.shift(timedelta(days=1, seconds=1))

        listed = api.get("/api/v1/tokens/").json()["results"]

    assert [item["name"] for item in listed] == ["long"]


@time_machine.travel(NOW, tick=False)
def test_the_account_page_makes_tokens_with_a_lifetime_and_shows_expiry(
    client: Client, owner: User
) -> None:
    login_verified(client, owner)

    created = client.post("/account/tokens/", {"name": "notebook", "lifetime_days": "10"})

    assert created.status_code == 200
    assert ApiToken.objects.get().expires_at == NOW + timedelta(days=10)
    page = client.get("/account/").content.decode()
    assert '<td class="token-expires">2026-03-12 09:00</td>' in page
    assert "90 unless you say, at most 365" in page


def test_the_account_page_refuses_a_lifetime_over_the_maximum(client: Client, owner: User) -> None:
    login_verified(client, owner)

    response = client.post("/account/tokens/", {"name": "x", "lifetime_days": "366"})

    assert response.status_code == 400
    assert "less than or equal to 365" in response.content.decode()
    assert not ApiToken.objects.exists()

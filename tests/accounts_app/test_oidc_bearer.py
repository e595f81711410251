"""The provider's access tokens on the API, against the real test provider: accepted only
with the multi-factor claim, and only for people the access policy admits."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts_app.models import OidcIdentity
from sessions_app.models import Environment
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.django_db, pytest.mark.integration]


def _token(oidc: Any, *, groups: list[str], mfa: bool) -> tuple[str, str]:
    username = f"u{uuid.uuid4().hex[:8]}"
    oidc.add_user(username, PASSWORD, email=f"{username}@example.org", groups=groups, mfa=mfa)
    return username, oidc.password_grant(username, PASSWORD)["access_token"]


def _client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_multi_factor_token_of_staff_is_accepted(oidc: Any, environment: Environment) -> None:
    username, token = _token(oidc, groups=["staff"], mfa=True)

    response = _client(token).get("/api/v1/environments/")

    assert response.status_code == 200
    assert [env["slug"] for env in response.json()] == ["ecmwf-dss"]
    # The first call created the user from the provider's claims.
    assert OidcIdentity.objects.get(user__username=username)


def test_a_token_without_the_multi_factor_claim_is_refused(oidc: Any) -> None:
    username, token = _token(oidc, groups=["staff"], mfa=False)

    response = _client(token).get("/api/v1/environments/")

    assert response.status_code == 403
    assert response.json()["code"] == "second_factor_required"
    assert not User.objects.filter(username=username).exists()


def test_a_token_of_someone_outside_the_policy_is_refused_without_an_account(oidc: Any) -> None:
    username, token = _token(oidc, groups=["readers"], mfa=True)

    response = _client(token).get("/api/v1/session/")

    assert response.status_code == 403
    assert response.json()["code"] == "access_denied"
    assert not User.objects.filter(username=username).exists()


def test_a_token_the_provider_does_not_know_is_refused(oidc: Any) -> None:
    response = _client("not-a-real-token").get("/api/v1/session/")

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_without_oidc_only_portal_tokens_are_bearer_tokens(db: None) -> None:
    response = _client("eyJhbGciOi.not.ours").get("/api/v1/session/")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid or revoked token."


def test_whom_a_token_is_for_is_remembered_for_a_while(
    oidc: Any, environment: Environment, settings: Any
) -> None:
    settings.OIDC_BEARER_CACHE_SECONDS = 60
    username, token = _token(oidc, groups=["staff"], mfa=True)
    client = _client(token)
    assert client.get("/api/v1/environments/").status_code == 200
    # The provider forgets the person's staff group: within the cache time the portal still
    # knows whom the token is for, and the portal's own policy still applies at every call.
    oidc.add_user(username, PASSWORD, groups=[], mfa=True)

    assert client.get("/api/v1/environments/").status_code == 200
    User.objects.get(username=username).groups.clear()
    refused = client.get("/api/v1/environments/")
    assert refused.status_code == 403 and refused.json()["code"] == "access_denied"


def test_with_no_cache_every_call_asks_the_provider(
    oidc: Any, environment: Environment, settings: Any
) -> None:
    settings.OIDC_BEARER_CACHE_SECONDS = 0
    username, token = _token(oidc, groups=["staff"], mfa=True)
    client = _client(token)
    assert client.get("/api/v1/environments/").status_code == 200

    oidc.add_user(username, PASSWORD, groups=[], mfa=True)

    refused = client.get("/api/v1/environments/")
    assert refused.status_code == 403 and refused.json()["code"] == "access_denied"

"""Who may call the REST API: bearer tokens, browser sessions, and JSON 401s for everyone else."""

from __future__ import annotations

import hashlib

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from portal.models import ApiToken
from portal.tokens import token_issue, token_revoke
from tests.conftest import login_verified

URL = "/api/v1/environments/"


def test_a_bearer_token_authenticates_its_user(owner: User) -> None:
    # given
    raw = token_issue(user=owner)
    client = APIClient()
    # when
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {raw}")
    # then
    assert response.status_code == 200
    assert response.wsgi_request.user == owner


def test_the_bearer_keyword_is_case_insensitive(owner: User) -> None:
    raw = token_issue(user=owner)

    response = APIClient().get(URL, HTTP_AUTHORIZATION=f"bearer {raw}")

    assert response.status_code == 200


def test_an_anonymous_call_is_a_json_401_with_a_code(db: None) -> None:
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"
    assert response.json()["detail"]
    assert response["WWW-Authenticate"] == 'Bearer realm="api"'


def test_an_unknown_token_is_a_json_401_with_a_code(owner: User) -> None:
    # given: a real token exists, but the client sends another one
    token_issue(user=owner)

    response = APIClient().get(URL, HTTP_AUTHORIZATION="Bearer jlp_not-a-real-token")

    assert response.status_code == 401
    assert response.json() == {
        "detail": "Invalid or revoked token.",
        "code": "authentication_failed",
    }


def test_a_revoked_token_no_longer_authenticates(owner: User) -> None:
    # given
    raw = token_issue(user=owner)
    client = APIClient()
    assert client.get(URL, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    # when
    token_revoke(ApiToken.objects.get(user=owner))
    response = client.get(URL, HTTP_AUTHORIZATION=f"Bearer {raw}")
    # then
    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


def test_a_token_of_a_deactivated_user_no_longer_authenticates(owner: User) -> None:
    raw = token_issue(user=owner)
    owner.is_active = False
    owner.save(update_fields=["is_active"])

    response = APIClient().get(URL, HTTP_AUTHORIZATION=f"Bearer {raw}")

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"


@pytest.mark.parametrize("header", ["Bearer", "Bearer two parts"])
def test_a_malformed_bearer_header_is_a_json_401(owner: User, header: str) -> None:
    token_issue(user=owner)

    response = APIClient().get(URL, HTTP_AUTHORIZATION=header)

    assert response.status_code == 401
    assert response.json()["code"] == "authentication_failed"
    assert "Bearer <token>" in response.json()["detail"]


def test_a_browser_session_authenticates(owner: User) -> None:
    client = APIClient()
    login_verified(client, owner)

    response = client.get(URL)

    assert response.status_code == 200
    assert response.wsgi_request.user == owner


def test_a_browser_session_needs_the_csrf_token_to_write(owner: User) -> None:
    # given: a logged-in browser whose page did not send the CSRF token
    client = APIClient(enforce_csrf_checks=True)
    login_verified(client, owner)
    # when
    response = client.post("/api/v1/session/", {"environment": "ecmwf-dss"}, format="json")
    # then: a cross-site form cannot launch or stop sessions with the user's cookie
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"
    assert "CSRF" in response.json()["detail"]


def test_a_bearer_token_needs_no_csrf_token_to_write(accepted: User) -> None:
    raw = token_issue(user=accepted)
    client = APIClient(enforce_csrf_checks=True)

    response = client.post(
        "/api/v1/terms/accept/",
        {"version": "1"},
        format="json",
        HTTP_AUTHORIZATION=f"Bearer {raw}",
    )

    assert response.status_code == 201


def test_a_token_is_stored_only_as_its_digest(owner: User) -> None:
    # when
    raw = token_issue(user=owner, name="laptop")
    # then: no column holds the raw value, and the digest is its SHA-256
    token = ApiToken.objects.get(user=owner)
    stored = [str(value) for value in ApiToken.objects.filter(pk=token.pk).values().get().values()]
    assert raw not in stored
    assert token.digest == hashlib.sha256(raw.encode()).hexdigest()
    assert raw.startswith(token.prefix)

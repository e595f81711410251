"""A provider's access token opens the API only if it was issued to the portal: introspection
(against the real test provider) or a JWT's ``aud``/``azp``."""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import jwt
import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from accounts_app.oidc_audience import AudienceRefused, access_token_audience_check
from tests.conftest import PASSWORD


def _person(oidc: Any) -> str:
    username = f"u{uuid.uuid4().hex[:8]}"
    oidc.add_user(username, PASSWORD, email=f"{username}@example.org", groups=["staff"], mfa=True)
    return username


def _get(token: str) -> Any:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client.get("/api/v1/environments/")


@pytest.mark.django_db
@pytest.mark.integration
def test_a_token_issued_to_another_application_is_refused(oidc: Any) -> None:
    # Given a person who signed in to another application of the same provider
    other = (f"other-app-{secrets.token_hex(4)}", secrets.token_urlsafe(16))
    oidc.add_other_client(*other)
    username = _person(oidc)
    token = oidc.password_grant(username, PASSWORD, client=other)["access_token"]
    assert oidc.userinfo(token)["preferred_username"] == username  # a good token, elsewhere

    # When that application uses the token on the portal's API
    response = _get(token)

    # Then it is refused, and the person gets no account here
    assert response.status_code == 401
    assert response.json()["code"] == "wrong_audience"
    assert not User.objects.filter(username=username).exists()


@pytest.mark.django_db
@pytest.mark.integration
def test_a_token_issued_to_the_portal_passes_introspection(oidc: Any) -> None:
    token = oidc.password_grant(_person(oidc), PASSWORD)["access_token"]

    assert _get(token).status_code == 200


@pytest.mark.django_db
@pytest.mark.integration
def test_an_opaque_token_without_introspection_is_refused(oidc: Any, settings: Any) -> None:
    settings.OIDC_OP_INTROSPECTION_ENDPOINT = ""
    token = oidc.password_grant(_person(oidc), PASSWORD)["access_token"]

    response = _get(token)

    assert response.status_code == 401
    assert response.json()["code"] == "audience_unknown"


def _jwt(**claims: Any) -> str:
    return jwt.encode(
        {"sub": "x", **claims}, "a key the portal never checks: userinfo does", algorithm="HS256"
    )


@pytest.mark.parametrize(
    "claims",
    [{"aud": "portal"}, {"aud": ["account", "portal"]}, {"aud": "account", "azp": "portal"}],
)
def test_a_jwt_naming_the_portal_passes(settings: Any, claims: dict[str, Any]) -> None:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_INTROSPECTION_ENDPOINT = ""

    access_token_audience_check(_jwt(**claims))


@pytest.mark.parametrize(
    "claims",
    [{}, {"aud": "other"}, {"aud": ["account", "portal-2"]}, {"azp": "other"}, {"aud": 7}],
)
def test_a_jwt_for_someone_else_is_refused(settings: Any, claims: dict[str, Any]) -> None:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_INTROSPECTION_ENDPOINT = ""

    with pytest.raises(AudienceRefused) as refused:
        access_token_audience_check(_jwt(**claims))

    assert refused.value.code == "wrong_audience"

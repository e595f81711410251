"""The portal re-asks the provider (``prompt=none``) once the ID token is older than
OIDC_RENEW_SECONDS, so someone signed out or disabled there does not stay in here."""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import User
from django.test import Client

from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

OIDC_BACKEND = "accounts_app.oidc.PortalOidcBackend"


@pytest.fixture
def oidc_settings(settings: Any) -> Any:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "http://idp.invalid/authorize"
    return settings


def _provider_sign_in(client: Client, user: User, token_age: float) -> None:
    client.force_login(user, backend=OIDC_BACKEND)
    session = client.session
    session["portal_second_factor"] = "provider"
    session["oidc_id_token_expiration"] = time.time() - token_age
    session.save()


def test_a_fresh_provider_session_is_not_rechecked(
    client: Client, oidc_settings: Any, owner: User
) -> None:
    _provider_sign_in(client, owner, token_age=-600)  # expires in ten minutes

    assert client.get("/terms/").status_code == 200


def test_an_old_provider_session_is_rechecked_without_prompting(
    client: Client, oidc_settings: Any, owner: User
) -> None:
    _provider_sign_in(client, owner, token_age=1)

    response = client.get("/terms/")

    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == (
        "http://idp.invalid/authorize"
    )
    assert parse_qs(location.query)["prompt"] == ["none"]


def test_local_sign_ins_are_never_sent_to_the_provider(
    client: Client, oidc_settings: Any, owner: User
) -> None:
    login_verified(client, owner)

    assert client.get("/terms/").status_code == 200

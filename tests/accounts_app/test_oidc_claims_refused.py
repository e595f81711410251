"""Sign-in refuses claims the database cannot store and userinfo about someone other than the
ID token's subject."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from accounts_app.oidc import (
    PortalOidcBackend,
    SignInRefused,
    user_for_claims,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def oidc_settings(settings: Any) -> Any:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "http://idp.invalid/authorize"
    return settings


@pytest.mark.parametrize(
    "extra",
    [{"preferred_username": "x" * 151}, {"family_name": "a\x00b"}, {"groups": ["staff", "\x00"]}],
)
def test_claims_the_database_cannot_store_are_refused(extra: dict[str, Any]) -> None:
    claims = {"sub": "s1", "preferred_username": "alice", "groups": ["staff"], **extra}

    with pytest.raises(SignInRefused) as refused:
        user_for_claims(claims)

    assert refused.value.code == "claims_invalid"
    assert not User.objects.exists()


def test_userinfo_about_someone_else_is_not_used(
    oidc_settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real test provider always answers consistently; a provider that does not is
    # simulated by replacing the userinfo call.
    backend = PortalOidcBackend()
    monkeypatch.setattr(
        backend,
        "get_userinfo",
        lambda *args: {"sub": "mallory", "preferred_username": "mallory", "groups": ["staff"]},
    )

    with pytest.raises(SignInRefused) as refused:
        backend.get_or_create_user("token", "id-token", {"sub": "alice", "amr": ["mfa"]})

    assert refused.value.code == "claims_invalid"
    assert not User.objects.exists()

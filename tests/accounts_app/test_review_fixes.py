"""Holes a security review found, each pinned: enrolment only before the first second factor,
stale provider sessions can't write, a refused re-check signs out, claims the database can't
store are refused, userinfo about someone else is not used, staff need the admin's
permissions for second-factor resets."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, Permission, User
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts_app.models import SecondFactorEstablished
from accounts_app.oidc import (
    REFUSAL_SESSION_KEY,
    PortalCallbackView,
    PortalOidcBackend,
    SignInRefused,
    user_for_claims,
)
from accounts_app.second_factor import SESSION_KEY, second_factor_reset_by_staff
from portal.models import ApiToken
from tests.conftest import PASSWORD, login_verified

pytestmark = pytest.mark.django_db

OIDC_BACKEND = "accounts_app.oidc.PortalOidcBackend"


@pytest.fixture
def oidc_settings(settings: Any) -> Any:
    settings.OIDC_RP_CLIENT_ID = "portal"
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "http://idp.invalid/authorize"
    return settings


def test_after_a_first_second_factor_no_one_can_enrol_with_the_first_factor_alone(
    client: Client, owner: User
) -> None:
    # The owner once passed the provider's multi-factor sign-in, and has no authenticator here.
    SecondFactorEstablished.objects.create(
        user=owner, established_at=owner.date_joined, method="provider"
    )
    client.post("/login/", {"username": "owner", "password": PASSWORD})

    page = client.get("/account/second-factor/")
    setup = client.get("/account/second-factor/setup/")
    enrol = client.post("/account/second-factor/setup/", {"code": "123456"})

    assert page.status_code == 200 and "ask the service desk" in page.content.decode()
    assert setup.status_code == 302 and setup["Location"].startswith("/account/second-factor/?")
    assert enrol.status_code == 302
    assert not TOTPDevice.objects.filter(user=owner).exists()


def test_a_staff_reset_opens_enrolment_again(owner: User, staff: User) -> None:
    SecondFactorEstablished.objects.create(
        user=owner, established_at=owner.date_joined, method="totp"
    )

    second_factor_reset_by_staff(user=owner, reset_by=staff)

    assert not SecondFactorEstablished.objects.filter(user=owner).exists()


def test_passing_the_second_factor_establishes_it(client: Client, owner: User) -> None:
    client.post("/login/", {"username": "owner", "password": PASSWORD})
    page = client.get("/account/second-factor/setup/").content.decode()
    key = page.split('id="totp-key">')[1].split("<")[0]
    from tests.accounts_app.totp import totp_code

    client.post("/account/second-factor/setup/", {"code": totp_code(key)})

    assert SecondFactorEstablished.objects.get(user=owner).method == "totp"


def _stale_provider_session(client: Client, user: User) -> None:
    client.force_login(user, backend=OIDC_BACKEND)
    session = client.session
    session[SESSION_KEY] = "provider"
    session["oidc_id_token_expiration"] = time.time() - 1
    session.save()


def test_a_stale_provider_session_cannot_write_pages(
    client: Client, oidc_settings: Any, owner: User
) -> None:
    _stale_provider_session(client, owner)

    response = client.post("/account/tokens/", {"name": "x"})

    assert response.status_code == 302 and response["Location"] == "/account/tokens/"
    assert not ApiToken.objects.exists()


def test_a_stale_provider_session_cannot_use_the_api(oidc_settings: Any, owner: User) -> None:
    client = APIClient()
    _stale_provider_session(client, owner)

    response = client.post("/api/v1/tokens/", {"name": "x"}, format="json")

    assert response.status_code == 403
    assert response.json()["code"] == "reauthentication_required"
    assert not ApiToken.objects.exists()


def test_a_refused_re_check_signs_the_person_out(oidc_settings: Any, staff: User) -> None:
    request = RequestFactory().get("/oidc/callback/")
    request.session = SessionStore()
    request.session[REFUSAL_SESSION_KEY] = {"code": "access_denied", "message": "Not open."}
    request.user = staff
    request.session["_auth_user_id"] = str(staff.pk)
    view = PortalCallbackView()
    view.request = request

    response = view.login_failure()

    assert response["Location"] == "/login/failed/"
    assert isinstance(request.user, AnonymousUser)
    assert request.session[REFUSAL_SESSION_KEY]["code"] == "access_denied"


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


def test_resetting_a_second_factor_needs_the_change_permission(
    client: Client, owner: User, other_user: User
) -> None:
    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(Permission.objects.get(codename="view_user"))
    TOTPDevice.objects.create(user=other_user, name="app", confirmed=True)
    login_verified(client, owner)

    response = client.post(
        "/admin/auth/user/",
        {"action": "reset_second_factor", "_selected_action": [other_user.pk]},
    )

    assert response.status_code in (200, 302)
    assert TOTPDevice.objects.filter(user=other_user).exists()


def test_only_a_superuser_resets_a_superusers_second_factor(
    client: Client, owner: User, staff: User
) -> None:
    owner.is_staff = True
    owner.save()
    owner.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_user", "change_user"])
    )
    TOTPDevice.objects.create(user=staff, name="app", confirmed=True)
    login_verified(client, owner)

    response = client.post(
        "/admin/auth/user/",
        {"action": "reset_second_factor", "_selected_action": [staff.pk]},
        follow=True,
    )

    assert "Only a superuser can reset" in response.content.decode()
    assert TOTPDevice.objects.filter(user=staff).exists()

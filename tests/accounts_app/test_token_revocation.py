"""What ends a user's API tokens besides their owner: a new password, a staff reset of the
second factor (which also ends their browser sessions), and a suspension imposed by a rule."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.forms import SetPasswordForm
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from rest_framework.test import APIClient

from accounts_app.second_factor import second_factor_reset_by_staff
from portal.models import ApiToken
from portal.tokens import token_issue
from suspension_app.models import RuleEvent
from suspension_app.rules import suspension_report
from suspension_app.services import suspension_impose
from tests.conftest import PASSWORD, login_verified

pytestmark = pytest.mark.django_db


def _works(raw: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    status = client.get("/api/v1/environments/").status_code
    assert status in (200, 401)
    return status == 200


def _because(user: User) -> set[str]:
    return set(ApiToken.objects.filter(user=user).values_list("revoked_because", flat=True))


def test_a_new_password_revokes_the_users_tokens(owner: User, other_user: User) -> None:
    mine, theirs = token_issue(user=owner), token_issue(user=other_user)
    # The admin's password form and `changepassword` both end in set_password() and save().
    form = SetPasswordForm(
        owner, {"new_password1": "a-new-pass-phrase", "new_password2": "a-new-pass-phrase"}
    )
    assert form.is_valid(), form.errors

    form.save()

    assert not _works(mine)
    assert _because(owner) == {ApiToken.RevokedBecause.PASSWORD_CHANGED}
    assert _works(theirs)


def test_re_hashing_the_same_password_at_sign_in_revokes_nothing(
    owner: User, settings: Any
) -> None:
    raw = token_issue(user=owner)
    # A hasher upgrade: the next sign-in stores the same password under the new hasher.
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *settings.PASSWORD_HASHERS,
    ]
    before = User.objects.get(pk=owner.pk).password

    assert Client().post("/login/", {"username": "owner", "password": PASSWORD}).status_code == 302

    assert User.objects.get(pk=owner.pk).password != before
    assert _works(raw)


def test_a_staff_reset_of_the_second_factor_revokes_tokens_and_ends_browser_sessions(
    owner: User, other_user: User, staff: User
) -> None:
    # Given the owner signed in on two browsers with a token, and another user signed in too
    raw = token_issue(user=owner)
    laptop, phone, others = Client(), Client(), Client()
    login_verified(laptop, owner)
    login_verified(phone, owner)
    login_verified(others, other_user)
    assert laptop.get("/account/").status_code == 200

    # When staff reset the owner's second factor
    second_factor_reset_by_staff(user=owner, reset_by=staff, note="lost phone")

    # Then the owner's token and both sessions are gone; the other user's session stays
    assert not _works(raw)
    assert _because(owner) == {ApiToken.RevokedBecause.SECOND_FACTOR_RESET}
    for browser in (laptop, phone):
        response = browser.get("/account/")
        assert response.status_code == 302
        assert response["Location"].startswith("/login/")
    assert others.get("/account/").status_code == 200
    assert Session.objects.count() == 1


def test_a_suspension_by_a_rule_revokes_the_users_tokens(owner: User, other_user: User) -> None:
    mine, theirs = token_issue(user=owner), token_issue(user=other_user)

    suspension = suspension_report(owner, RuleEvent.Kind.CLEANUP_CIRCUMVENTION, {"path": "/x"})

    assert suspension is not None and suspension.rule == "cleanup_circumvention"
    assert _because(owner) == {ApiToken.RevokedBecause.SUSPENDED}
    assert ApiToken.objects.get(user=other_user).revoked_at is None
    assert _works(theirs) and not _works(mine)


def test_a_suspension_by_staff_leaves_the_tokens(owner: User, staff: User) -> None:
    token_issue(user=owner)

    suspension_impose(user=owner, reason="investigating", imposed_by=staff)

    assert ApiToken.objects.get(user=owner).revoked_at is None

"""Claims → users: created on first sign-in, kept up to date, refused outside the policy
without leaving an account behind."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from accounts_app.models import OidcIdentity
from accounts_app.oidc import SignInRefused, mfa_asserted, user_for_claims
from accounts_app.policy import access_allowed

pytestmark = pytest.mark.django_db


def _claims(**extra: Any) -> dict[str, Any]:
    claims = {
        "sub": "sub-alice",
        "preferred_username": "alice",
        "email": "alice@example.org",
        "given_name": "Alice",
        "family_name": "Liddell",
        "groups": ["staff", "readers"],
    }
    claims.update(extra)
    return claims


def test_first_sign_in_creates_an_admitted_user_without_a_password() -> None:
    user = user_for_claims(_claims())

    assert user.username == "alice"
    assert (user.email, user.first_name, user.last_name) == (
        "alice@example.org",
        "Alice",
        "Liddell",
    )
    assert not user.has_usable_password()
    assert access_allowed(user)
    assert OidcIdentity.objects.get(user=user).subject == "sub-alice"


def test_later_sign_ins_update_the_user_from_the_claims() -> None:
    user_for_claims(_claims())

    user = user_for_claims(_claims(email="a.liddell@example.org", family_name="Hargreaves"))

    assert User.objects.count() == 1
    assert (user.email, user.last_name) == ("a.liddell@example.org", "Hargreaves")


def test_the_subject_not_the_username_identifies_the_person() -> None:
    first = user_for_claims(_claims())

    renamed = user_for_claims(_claims(preferred_username="alice2"))

    assert renamed.pk == first.pk  # the portal keeps its username; the link is the subject


def test_someone_outside_the_policy_is_refused_and_no_account_is_made() -> None:
    with pytest.raises(SignInRefused) as refused:
        user_for_claims(_claims(groups=["readers"]))

    assert refused.value.code == "access_denied"
    assert "not open to you" in refused.value.message
    assert not User.objects.exists()
    assert not OidcIdentity.objects.exists()


def test_someone_who_left_the_staff_loses_access_at_the_next_sign_in() -> None:
    user = user_for_claims(_claims())

    with pytest.raises(SignInRefused):
        user_for_claims(_claims(groups=[]))

    user.refresh_from_db()
    assert not access_allowed(user)


def test_a_provider_name_never_takes_over_a_local_account(owner: User) -> None:
    with pytest.raises(SignInRefused) as refused:
        user_for_claims(_claims(preferred_username="owner"))

    assert refused.value.code == "account_conflict"
    assert not OidcIdentity.objects.exists()


def test_missing_username_claim_is_a_clear_refusal() -> None:
    with pytest.raises(SignInRefused) as refused:
        user_for_claims(_claims(preferred_username=""))

    assert refused.value.code == "claims_missing"
    assert "preferred_username" in refused.value.message


def test_access_claim_and_values_are_configurable(settings: Any) -> None:
    settings.OIDC_ACCESS_CLAIM = "roles"
    settings.OIDC_ACCESS_VALUES = ["jupyter-user"]

    user = user_for_claims(_claims(groups=[], roles=["jupyter-user"]))

    assert access_allowed(user)


def test_an_empty_access_group_opens_the_portal(settings: Any) -> None:
    settings.ACCESS_GROUP = ""

    user = user_for_claims(_claims(groups=[]))

    assert access_allowed(user)


@pytest.mark.parametrize(
    ("claims", "expected"),
    [
        ({"amr": ["pwd", "mfa"]}, True),
        ({"amr": ["pwd", "otp"]}, True),
        ({"amr": "pwd hwk"}, True),
        ({"amr": ["pwd"]}, False),
        ({}, False),
        ({"acr": "gold"}, False),
    ],
)
def test_multi_factor_assertion(claims: dict[str, Any], expected: bool) -> None:
    assert mfa_asserted(claims) is expected


def test_acr_values_can_count_as_multi_factor(settings: Any) -> None:
    settings.OIDC_MFA_ACR_VALUES = ["gold"]

    assert mfa_asserted({"acr": "gold"})

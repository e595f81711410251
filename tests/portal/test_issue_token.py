"""The ``issue_token`` management command: a token for a user who has a second factor; for
one who has none only with ``--force``, which says so."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework.test import APIClient

from accounts_app.models import SecondFactorEstablished
from portal.models import ApiToken


@pytest.fixture
def enrolled(owner: User) -> User:
    """The owner, with a confirmed authenticator."""
    TOTPDevice.objects.create(user=owner, name="Authenticator app", confirmed=True)
    return owner


def test_issue_token_prints_a_token_that_authenticates_the_user(enrolled: User) -> None:
    # given
    out = StringIO()
    # when
    call_command("issue_token", "owner", stdout=out)
    # then
    raw = out.getvalue().strip()
    response = APIClient().get("/api/v1/environments/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.wsgi_request.user == enrolled


def test_issue_token_records_the_name_given(enrolled: User) -> None:
    call_command("issue_token", "owner", "--name", "nightly job", stdout=StringIO())

    assert ApiToken.objects.get(user=enrolled).name == "nightly job"


def test_issue_token_gives_the_default_lifetime_or_the_one_asked_for(enrolled: User) -> None:
    before = timezone.now()
    call_command("issue_token", "owner", "--name", "default", stdout=StringIO())
    call_command("issue_token", "owner", "--name", "short", "--days", "7", stdout=StringIO())

    default = ApiToken.objects.get(name="default")
    short = ApiToken.objects.get(name="short")
    assert before + timedelta(days=90) <= default.expires_at <= timezone.now() + timedelta(days=90)
    assert short.expires_at - short.created_at == timedelta(days=7)


def test_issue_token_refuses_a_lifetime_over_the_maximum(enrolled: User) -> None:
    with pytest.raises(CommandError, match="1 to 365 days"):
        call_command("issue_token", "owner", "--days", "366", stdout=StringIO())

    assert not ApiToken.objects.exists()


def test_a_user_who_passed_the_providers_second_factor_gets_a_token(owner: User) -> None:
    SecondFactorEstablished.objects.create(
        user=owner, established_at=timezone.now(), method="provider"
    )
    out = StringIO()

    call_command("issue_token", "owner", stdout=out)

    assert out.getvalue().startswith("jlp_")


def test_issue_token_refuses_a_user_without_a_second_factor(owner: User) -> None:
    # An authenticator that was never confirmed is no second factor either.
    TOTPDevice.objects.create(user=owner, name="Authenticator app", confirmed=False)
    out = StringIO()

    with pytest.raises(CommandError, match="no second factor.*--force"):
        call_command("issue_token", "owner", stdout=out)

    assert out.getvalue() == ""
    assert not ApiToken.objects.exists()


def test_force_issues_the_token_with_a_warning(owner: User) -> None:
    out, err = StringIO(), StringIO()

    call_command("issue_token", "owner", "--force", stdout=out, stderr=err)

    assert out.getvalue().startswith("jlp_")
    assert "Warning: 'owner' has no second factor" in err.getvalue()
    assert ApiToken.objects.filter(user=owner).count() == 1


def test_issue_token_for_an_unknown_user_is_a_command_error(owner: User) -> None:
    with pytest.raises(CommandError, match="nobody"):
        call_command("issue_token", "nobody", stdout=StringIO())

    assert not ApiToken.objects.exists()

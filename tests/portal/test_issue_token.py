"""The ``issue_token`` management command."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from portal.models import ApiToken


def test_issue_token_prints_a_token_that_authenticates_the_user(owner: User) -> None:
    # given
    out = StringIO()
    # when
    call_command("issue_token", "owner", stdout=out)
    # then
    raw = out.getvalue().strip()
    response = APIClient().get("/api/v1/environments/", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    assert response.wsgi_request.user == owner


def test_issue_token_records_the_name_given(owner: User) -> None:
    call_command("issue_token", "owner", "--name", "nightly job", stdout=StringIO())

    assert ApiToken.objects.get(user=owner).name == "nightly job"


def test_issue_token_for_an_unknown_user_is_a_command_error(owner: User) -> None:
    with pytest.raises(CommandError, match="nobody"):
        call_command("issue_token", "nobody", stdout=StringIO())

    assert not ApiToken.objects.exists()

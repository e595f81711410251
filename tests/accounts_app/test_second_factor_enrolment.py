"""Enrolment of a second factor: only before the first one (a person who passed a provider's
multi-factor sign-in cannot enrol an authenticator with the first factor alone), again after a
staff reset, and passing it is recorded as established."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.models import SecondFactorEstablished
from accounts_app.second_factor import second_factor_reset_by_staff
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


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

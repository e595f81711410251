"""The admin requires staff status and a verified second factor, without redirect loops;
staff reset a user's second factor there, and the reset is recorded."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from accounts_app.models import SecondFactorReset
from tests.conftest import PASSWORD, login_verified

pytestmark = pytest.mark.django_db


def test_anonymous_people_go_to_the_portal_sign_in(client: Client) -> None:
    response = client.get("/admin/")

    assert response["Location"] == "/login/?next=/admin/"


def test_staff_without_a_device_are_sent_to_set_one_up_not_in_a_loop(
    client: Client, staff: User
) -> None:
    client.post("/login/", {"username": "staff", "password": PASSWORD, "next": "/admin/"})

    response = client.get("/admin/", follow=True)

    assert [url for url, _ in response.redirect_chain] == [
        "/account/second-factor/?next=%2Fadmin%2F",
        "/account/second-factor/setup/?next=%2Fadmin%2F",
    ]
    assert response.status_code == 200
    assert "Set up your second factor" in response.content.decode()


def test_verified_staff_get_in(client: Client, staff: User) -> None:
    login_verified(client, staff)

    assert client.get("/admin/").status_code == 200


def test_verified_non_staff_are_refused_with_a_page(client: Client, owner: User) -> None:
    login_verified(client, owner)

    response = client.get("/admin/", follow=True)

    assert response.status_code == 403
    assert "The administration pages are for the operator" in response.content.decode()


def test_device_admin_pages_that_show_secret_keys_are_gone(client: Client, staff: User) -> None:
    login_verified(client, staff)

    assert client.get("/admin/otp_totp/totpdevice/").status_code == 404


def test_staff_reset_a_users_second_factor_and_it_is_recorded(
    client: Client, staff: User, owner: User
) -> None:
    TOTPDevice.objects.create(user=owner, name="app", confirmed=True)
    StaticDevice.objects.create(user=owner, name="backup", confirmed=True)
    login_verified(client, staff)

    response = client.post(
        "/admin/auth/user/",
        {"action": "reset_second_factor", "_selected_action": [owner.pk]},
        follow=True,
    )

    assert response.status_code == 200
    assert "Second factor reset for 1 user(s)" in response.content.decode()
    assert not TOTPDevice.objects.filter(user=owner).exists()
    assert not StaticDevice.objects.filter(user=owner).exists()
    reset = SecondFactorReset.objects.get(user=owner)
    assert (reset.method, reset.reset_by) == ("staff", staff)
    assert client.get("/admin/accounts_app/secondfactorreset/").status_code == 200

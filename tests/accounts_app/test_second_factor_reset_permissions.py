"""Staff need the admin's change permission to reset someone's second factor, and only a
superuser resets a superuser's."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django_otp.plugins.otp_totp.models import TOTPDevice

from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


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

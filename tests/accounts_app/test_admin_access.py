"""The admin requires staff status and a verified second factor, without redirect loops;
staff reset a user's second factor there, and the reset is recorded. Staff grant nothing they
do not hold, and leave alone the accounts that hold more than they do."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.utils import timezone
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


# --- Staff grant nothing they do not hold -----------------------------------------------------


def _permission(label: str) -> Permission:
    app_label, _, codename = label.partition(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _clerk(*labels: str) -> tuple[User, Client]:
    """A staff member (not superuser) holding ``auth.change_user`` and ``labels``, signed in."""
    clerk = User.objects.create_user("clerk", is_staff=True)
    clerk.user_permissions.set([_permission(p) for p in ("auth.change_user", *labels)])
    client = Client()
    login_verified(client, clerk)
    return clerk, client


def _user_form(user: User, **changes: Any) -> dict[str, Any]:
    """The user form as the admin page sends it back, with ``changes`` (booleans: checked)."""
    joined = timezone.localtime(user.date_joined)
    fields: dict[str, Any] = {
        "username": user.username,
        "email": user.email,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "groups": [g.pk for g in user.groups.all()],
        "user_permissions": [p.pk for p in user.user_permissions.all()],
        "date_joined_0": f"{joined:%Y-%m-%d}",
        "date_joined_1": f"{joined:%H:%M:%S}",
        **changes,
    }
    return {
        name: ("on" if value is True else value)
        for name, value in fields.items()
        if value is not False
    }


def test_a_clerk_cannot_make_themselves_or_anyone_superuser_or_staff(owner: User) -> None:
    clerk, client = _clerk()

    for user in (clerk, owner):
        response = client.post(
            f"/admin/auth/user/{user.pk}/change/",
            _user_form(user, is_staff=True, is_superuser=True),
        )
        assert response.status_code == 302
        user.refresh_from_db()
        assert not user.is_superuser
        assert user.is_staff == (user == clerk)  # unchanged


def test_a_clerk_grants_only_permissions_they_hold(owner: User) -> None:
    # Given a clerk who may also view sessions, but not delete tokens
    clerk, client = _clerk("sessions_app.view_session")
    url = f"/admin/auth/user/{owner.pk}/change/"
    view, delete = _permission("sessions_app.view_session"), _permission("portal.delete_apitoken")

    # When they give the owner a permission they lack, then it is refused
    refused = client.post(url, _user_form(owner, user_permissions=[view.pk, delete.pk]))
    assert refused.status_code == 200
    assert "You cannot grant what you do not hold: portal.delete_apitoken" in refused.text
    assert not owner.user_permissions.exists()

    # and one they hold is granted
    assert client.post(url, _user_form(owner, user_permissions=[view.pk])).status_code == 302
    assert list(owner.user_permissions.all()) == [view]


def test_a_clerk_cannot_grant_a_permission_through_a_group(owner: User) -> None:
    # Given a group that carries token deletion, which the clerk lacks
    revokers = Group.objects.create(name="revokers")
    revokers.permissions.add(_permission("portal.delete_apitoken"))
    _, client = _clerk()
    groups = [*owner.groups.values_list("pk", flat=True), revokers.pk]

    response = client.post(f"/admin/auth/user/{owner.pk}/change/", _user_form(owner, groups=groups))

    assert response.status_code == 200
    assert "these groups carry portal.delete_apitoken" in response.text
    assert not owner.groups.filter(pk=revokers.pk).exists()


def test_a_group_editor_cannot_add_a_permission_they_lack() -> None:
    editor = User.objects.create_user("editor", is_staff=True)
    editor.user_permissions.set([_permission("auth.change_group"), _permission("auth.view_user")])
    client = Client()
    login_verified(client, editor)
    group = Group.objects.create(name="helpdesk")
    url = f"/admin/auth/group/{group.pk}/change/"

    refused = client.post(
        url,
        {
            "name": "helpdesk",
            "permissions": [
                _permission("auth.change_group").pk,
                _permission("auth.change_user").pk,
            ],
        },
    )
    held = client.post(url, {"name": "helpdesk", "permissions": [_permission("auth.view_user").pk]})

    assert refused.status_code == 200
    assert "auth.change_user" in refused.text
    assert held.status_code == 302
    assert [_permission("auth.view_user")] == list(group.permissions.all())


@pytest.mark.parametrize("stronger", ["superuser", "more permissions"])
def test_a_clerk_leaves_alone_accounts_that_hold_more(stronger: str) -> None:
    # Given an account that holds more than the clerk: a superuser, or a staff member who may
    # also delete tokens
    if stronger == "superuser":
        target = User.objects.create_user("root", is_staff=True, is_superuser=True)
    else:
        target = User.objects.create_user("revoker", is_staff=True)
        target.user_permissions.set(
            [_permission("auth.change_user"), _permission("portal.delete_apitoken")]
        )
    TOTPDevice.objects.create(user=target, name="app", confirmed=True)
    _, client = _clerk("auth.view_user")

    # When the clerk edits it, sets its password, deletes it or resets its second factor
    change = client.post(
        f"/admin/auth/user/{target.pk}/change/", _user_form(target, is_active=False)
    )
    password = client.post(
        f"/admin/auth/user/{target.pk}/password/",
        {"password1": "another-horse-battery", "password2": "another-horse-battery"},
    )
    reset = client.post(
        "/admin/auth/user/",
        {"action": "reset_second_factor", "_selected_action": [target.pk]},
        follow=True,
    )

    # then each is refused, and the account is as it was
    assert (change.status_code, password.status_code) == (403, 403)
    assert "You cannot reset the second factor" in reset.text or "Only a superuser" in reset.text
    target.refresh_from_db()
    assert target.is_active and not target.check_password("another-horse-battery")
    assert TOTPDevice.objects.filter(user=target).exists()
    assert not SecondFactorReset.objects.filter(user=target).exists()
    # (the page itself may still be read)
    assert client.get(f"/admin/auth/user/{target.pk}/change/").status_code == 200


def test_a_clerk_resets_the_second_factor_of_an_ordinary_user(owner: User) -> None:
    TOTPDevice.objects.create(user=owner, name="app", confirmed=True)
    _, client = _clerk("auth.view_user")

    client.post(
        "/admin/auth/user/", {"action": "reset_second_factor", "_selected_action": [owner.pk]}
    )

    assert not TOTPDevice.objects.filter(user=owner).exists()
    assert SecondFactorReset.objects.filter(user=owner).exists()


def test_staff_cannot_reset_their_own_second_factor_from_the_user_list() -> None:
    # The reset ends every browser session of the account, the one asking among them.
    clerk, client = _clerk()
    TOTPDevice.objects.create(user=clerk, name="app", confirmed=True)

    answer = client.post(
        "/admin/auth/user/",
        {"action": "reset_second_factor", "_selected_action": [clerk.pk]},
        follow=True,
    )

    assert answer.status_code == 200
    assert "cannot reset your own second factor" in answer.text
    assert TOTPDevice.objects.filter(user=clerk, name="app").exists()
    assert not SecondFactorReset.objects.filter(user=clerk).exists()

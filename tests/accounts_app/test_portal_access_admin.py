"""Admitting people from the admin (issue 15): the access group exists on a new installation,
staff grant and revoke portal access with the user list's actions (which take
``auth.change_user`` and leave alone accounts that hold more), and the list shows and filters
who may use the portal."""

from __future__ import annotations

import importlib

import pytest
from django.apps import apps as django_apps
from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Group, Permission, User
from django.test import Client

from accounts_app.policy import access_refusal
from tests.conftest import PASSWORD, login_verified

pytestmark = pytest.mark.django_db

USERS = "/admin/auth/user/"


def _permission(label: str) -> Permission:
    app_label, _, codename = label.partition(".")
    return Permission.objects.get(content_type__app_label=app_label, codename=codename)


def _staff_member(*labels: str) -> Client:
    """A staff member (not superuser) holding ``labels``, signed in and verified."""
    member = User.objects.create_user("clerk", is_staff=True)
    member.user_permissions.set([_permission(label) for label in labels])
    client = Client()
    login_verified(client, member)
    return client


def _newcomer() -> User:
    return User.objects.create_user("newcomer", "newcomer@example.org", PASSWORD)


def _act(client: Client, action: str, *users: User) -> str:
    response = client.post(
        USERS, {"action": action, "_selected_action": [u.pk for u in users]}, follow=True
    )
    assert response.status_code == 200
    return response.text


def _member(user: User) -> bool:
    return user.groups.filter(name=settings.ACCESS_GROUP).exists()


def test_a_new_installation_has_the_access_group() -> None:
    # Transactional tests may have flushed it: the migration's function gives it back, as
    # `migrate` does on a new installation, and running it twice makes no second group.
    Group.objects.filter(name=settings.ACCESS_GROUP).delete()
    migration = importlib.import_module("accounts_app.migrations.0004_access_group")
    migration.create_access_group(django_apps, None)
    migration.create_access_group(django_apps, None)

    assert Group.objects.filter(name=settings.ACCESS_GROUP).count() == 1


def test_grant_admits_a_new_user_and_revoke_shuts_them_out_again(staff: User) -> None:
    # Given a new local user, whom the policy does not admit
    newcomer = _newcomer()
    assert access_refusal(newcomer) is not None
    client = Client()
    login_verified(client, staff)

    # When staff grant them portal access
    page = _act(client, "grant_portal_access", newcomer)

    # then they are in the access group, may use the portal, and the change is in their history
    assert "Portal access granted to newcomer" in page
    assert _member(newcomer)
    assert access_refusal(newcomer) is None
    assert LogEntry.objects.filter(object_id=str(newcomer.pk), user=staff).exists()

    # and a revoke takes it back
    assert "Portal access revoked from newcomer" in _act(client, "revoke_portal_access", newcomer)
    assert not _member(newcomer)
    assert access_refusal(newcomer) is not None


def test_revoking_a_staff_member_says_staff_status_still_admits_them(staff: User) -> None:
    colleague = User.objects.create_user("colleague", is_staff=True)
    client = Client()
    login_verified(client, staff)

    page = _act(client, "revoke_portal_access", colleague)

    assert "Still admitted, as staff: colleague" in page


def test_the_actions_need_the_change_user_permission() -> None:
    # Given a staff member who may view users but not change them
    newcomer = _newcomer()
    client = _staff_member("auth.view_user")

    # then the list offers neither action, and posting one changes nothing
    listing = client.get(USERS).text
    assert "grant_portal_access" not in listing
    assert "revoke_portal_access" not in listing
    client.post(USERS, {"action": "grant_portal_access", "_selected_action": [newcomer.pk]})
    assert not _member(newcomer)


def test_a_clerk_with_change_user_grants_access() -> None:
    newcomer = _newcomer()
    client = _staff_member("auth.view_user", "auth.change_user")

    assert "grant_portal_access" in client.get(USERS).text
    _act(client, "grant_portal_access", newcomer)

    assert _member(newcomer)


@pytest.mark.parametrize("action", ["grant_portal_access", "revoke_portal_access"])
def test_accounts_that_hold_more_are_left_alone_the_others_changed(action: str) -> None:
    # Given a clerk, a superuser and a staff member who may also delete tokens (both hold more
    # than the clerk), and a plain user
    client = _staff_member("auth.view_user", "auth.change_user")
    group, _ = Group.objects.get_or_create(name=settings.ACCESS_GROUP)
    boss = User.objects.create_superuser("boss", "boss@example.org", PASSWORD)
    revoker = User.objects.create_user("revoker", is_staff=True)
    revoker.user_permissions.add(_permission("portal.delete_apitoken"))
    plain = _newcomer()
    if action == "revoke_portal_access":
        for user in (boss, revoker, plain):
            user.groups.add(group)

    # When the clerk runs the action on all three
    page = _act(client, action, boss, revoker, plain)

    # then only the plain user changed, and the page says which were left alone
    granted = action == "grant_portal_access"
    assert _member(plain) == granted
    assert _member(boss) != granted and _member(revoker) != granted
    assert "you do not hold: boss, revoker." in page


def test_a_grant_of_a_group_carrying_a_permission_the_clerk_lacks_is_refused() -> None:
    # Given an access group that the operator gave a permission (token deletion)
    group, _ = Group.objects.get_or_create(name=settings.ACCESS_GROUP)
    group.permissions.add(_permission("portal.delete_apitoken"))
    newcomer = _newcomer()
    client = _staff_member("auth.view_user", "auth.change_user")

    page = _act(client, "grant_portal_access", newcomer)

    assert "carries permissions you do not hold: portal.delete_apitoken" in page
    assert not _member(newcomer)


def test_a_changed_access_group_is_made_at_the_first_grant(staff: User, settings: object) -> None:
    settings.ACCESS_GROUP = "colleagues"  # type: ignore[attr-defined]
    newcomer = _newcomer()
    client = Client()
    login_verified(client, staff)

    _act(client, "grant_portal_access", newcomer)

    assert newcomer.groups.filter(name="colleagues").exists()
    assert access_refusal(newcomer) is None


def test_the_list_shows_and_filters_portal_access(staff: User, owner: User) -> None:
    # Given an admitted user (owner), staff (also in the group), a new user outside, and an
    # inactive member
    newcomer = _newcomer()
    gone = User.objects.create_user("gone", is_active=False)
    gone.groups.add(Group.objects.get(name=settings.ACCESS_GROUP))
    client = Client()
    login_verified(client, staff)

    listing = client.get(USERS)
    yes = client.get(USERS, {"portal_access": "yes"}).context["cl"].result_list
    no = client.get(USERS, {"portal_access": "no"}).context["cl"].result_list
    by_group = (
        client.get(USERS, {"groups__id__exact": Group.objects.get(name=settings.ACCESS_GROUP).pk})
        .context["cl"]
        .result_list
    )

    assert "column-portal_access" in listing.text
    assert {u.username for u in yes} == {"owner", "staff"}
    assert {u.username for u in no} == {"newcomer", "gone"}
    assert {u.username for u in by_group} == {"owner", "staff", "gone"}
    assert newcomer.username in listing.text


def test_the_add_user_page_says_what_the_person_does_and_what_is_left(staff: User) -> None:
    client = Client()
    login_verified(client, staff)

    page = client.get(f"{USERS}add/").text

    assert "sets up their second factor" in page
    assert "Grant portal access" in page
    # A local account with a password the person signs in with.
    response = client.post(
        f"{USERS}add/",
        {
            "username": "colleague",
            "usable_password": "true",
            "password1": "a long enough pass phrase",
            "password2": "a long enough pass phrase",
        },
    )
    assert response.status_code == 302
    assert User.objects.get(username="colleague").check_password("a long enough pass phrase")

"""The admin's actions that act on other people's things each need the permission they use:
revoking a token ``portal.delete_apitoken``, a scratch cleanup ``storage_app.run_cleanup``, a
scan ``storage_app.change_storageaccount``. Seeing the list is not enough."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client

from portal.models import ApiToken
from portal.tokens import token_issue
from storage_app.accounts import storage_account_for
from storage_app.models import StorageAccount
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db


def _staff_with(*labels: str) -> Client:
    member = User.objects.create_user("operator", is_staff=True)
    member.user_permissions.set(
        Permission.objects.get(content_type__app_label=app, codename=codename)
        for app, _, codename in (label.partition(".") for label in labels)
    )
    client = Client()
    login_verified(client, member)
    return client


def _owner_token(owner: User) -> ApiToken:
    raw = token_issue(user=owner, name="laptop")
    return ApiToken.objects.get(prefix=raw[:12])


@pytest.mark.parametrize(
    ("labels", "revoked"),
    [
        (["portal.view_apitoken"], False),
        (["portal.view_apitoken", "portal.change_apitoken"], False),
        (["portal.view_apitoken", "portal.delete_apitoken"], True),
    ],
)
def test_revoking_a_token_takes_the_delete_permission(
    owner: User, labels: list[str], revoked: bool
) -> None:
    token = _owner_token(owner)

    _staff_with(*labels).post(
        "/admin/portal/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )

    token.refresh_from_db()
    assert (token.revoked_at is not None) == revoked


def test_the_token_page_never_shows_its_digest(owner: User, staff: User) -> None:
    token = _owner_token(owner)
    client = Client()
    login_verified(client, staff)

    page = client.get(f"/admin/portal/apitoken/{token.pk}/change/").content.decode()

    assert token.prefix in page
    assert token.digest not in page


@pytest.mark.parametrize(
    ("action", "labels", "done"),
    [
        ("cleanup_now", ["storage_app.view_storageaccount"], False),
        ("cleanup_now", ["storage_app.change_storageaccount"], False),
        ("cleanup_now", ["storage_app.view_storageaccount", "storage_app.run_cleanup"], True),
        ("scan_now", ["storage_app.view_storageaccount"], False),
        ("scan_now", ["storage_app.change_storageaccount"], True),
    ],
)
def test_storage_actions_take_their_own_permission(
    owner: User, action: str, labels: list[str], done: bool, settings: Any
) -> None:
    # Given the owner's account, never measured yet
    account = storage_account_for(owner)
    assert account.scratch_measured_at is None

    # When staff with these permissions send the action
    response = _staff_with(*labels).post(
        "/admin/storage_app/storageaccount/",
        {"action": action, "_selected_action": [account.pk]},
        follow=True,
    )

    # then it ran (and measured the scratch) only with the permission it needs; without it the
    # list comes back, without the action
    assert response.status_code == 200
    assert (f'value="{action}"' in response.text) == done
    measured = StorageAccount.objects.get(pk=account.pk).scratch_measured_at
    assert (measured is not None) == done


def test_the_token_list_refuses_filters_on_the_digest(owner: User, staff: User) -> None:
    token = _owner_token(owner)
    client = Client()
    login_verified(client, staff)

    answer = client.get("/admin/portal/apitoken/", {"digest__startswith": token.digest[:4]})

    assert answer.status_code == 400

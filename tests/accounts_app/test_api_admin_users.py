"""The staff API of users (``/api/v1/admin/users/``): every user with their suspension in force,
their active session and their use of the service; filters; only staff with the user ``view``
(or ``change``) permission read it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from storage_app.models import StorageAccount
from suspension_app.services import suspension_impose
from tests.conftest import login_verified

pytestmark = pytest.mark.django_db

USERS = "/api/v1/admin/users/"
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _frozen() -> Iterator[None]:
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _fast_passwords(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _client(user: User) -> APIClient:
    client = APIClient()
    login_verified(client, User.objects.get(pk=user.pk))  # permissions read afresh
    return client


@pytest.fixture
def world(owner: User, other_user: User, staff: User, environment: Environment) -> dict[str, Any]:
    """The owner: suspended, two sessions in the last days (3 hours in all) and one long ago,
    storage measured. The other user: a running session of an hour so far."""
    hours = timedelta(hours=1)
    Session.objects.create(
        user=owner, environment=environment, state=Session.State.STOPPED,
        created_at=NOW - 30 * hours, started_at=NOW - 30 * hours, ended_at=NOW - 28 * hours,
    )  # fmt: skip
    Session.objects.create(
        user=owner, environment=environment, state=Session.State.EXPIRED,
        created_at=NOW - 5 * hours, started_at=NOW - 5 * hours, ended_at=NOW - 4 * hours,
    )  # fmt: skip
    long_ago = NOW - timedelta(days=60)
    Session.objects.create(
        user=owner, environment=environment, state=Session.State.STOPPED,
        created_at=long_ago, started_at=long_ago, ended_at=long_ago + hours,
    )  # fmt: skip
    running = Session.objects.create(
        user=other_user, environment=environment, state=Session.State.RUNNING,
        created_at=NOW - hours, started_at=NOW - hours, expires_at=NOW + hours,
    )  # fmt: skip
    StorageAccount.objects.create(
        user=owner, created_at=NOW, delete_after=NOW + timedelta(days=90),
        private_bytes=2048, private_measured_at=NOW, scratch_bytes=512, scratch_measured_at=NOW,
    )  # fmt: skip
    suspension = suspension_impose(
        user=owner, reason="Scratch cleanup circumvented.", imposed_by=staff
    )
    return {"running": running, "suspension": suspension}


def _by_name(response: Any) -> dict[str, dict[str, Any]]:
    assert response.status_code == 200, response.content
    return {row["username"]: row for row in response.json()["results"]}


def test_staff_see_each_user_with_suspension_session_and_usage(
    staff: User, world: dict[str, Any], environment: Environment
) -> None:
    # when
    users = _by_name(_client(staff).get(USERS))
    # then every user, by username
    assert list(users) == ["other", "owner", "staff"]
    owner = users["owner"]
    assert owner["suspended"] is True
    assert owner["suspension"] == {
        "id": world["suspension"].pk,
        "reason": "Scratch cleanup circumvented.",
        "since": "2025-03-03T09:00:00Z",
    }
    assert owner["active_session"] is None  # stopped by the suspension, or none
    assert owner["usage"] == {
        "days": 30,
        "sessions_in_range": 2,
        "sessions_total": 3,
        "cpu_hours": pytest.approx(3 * environment.cpus),
        "memory_gb_hours": pytest.approx(3 * environment.memory_mb / 1024),
        "private_bytes": 2048,
        "scratch_bytes": 512,
    }
    other = users["other"]
    assert (other["suspended"], other["suspension"]) == (False, None)
    assert other["active_session"] == {"id": str(world["running"].pk), "state": "running"}
    assert other["usage"]["cpu_hours"] == pytest.approx(environment.cpus)
    assert (other["usage"]["private_bytes"], other["usage"]["scratch_bytes"]) == (None, None)
    assert users["staff"]["is_staff"] is True
    assert "password" not in owner


def test_days_narrows_the_usage_figures(
    staff: User, world: dict[str, Any], environment: Environment
) -> None:
    # within the last UTC day (today): the expired session's hour only
    owner = _by_name(_client(staff).get(USERS, {"days": 1}))["owner"]

    assert (owner["usage"]["days"], owner["usage"]["sessions_in_range"]) == (1, 1)
    assert owner["usage"]["cpu_hours"] == pytest.approx(environment.cpus)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"suspended": "true"}, ["owner"]),
        ({"suspended": "false"}, ["other", "staff"]),
        ({"search": "OWN"}, ["owner"]),
        ({"search": "other@example"}, ["other"]),
        ({"search": "nobody"}, []),
    ],
    ids=["suspended", "not-suspended", "username", "email", "none"],
)
def test_filters_narrow_the_list(
    staff: User, world: dict[str, Any], query: dict[str, str], expected: list[str]
) -> None:
    assert list(_by_name(_client(staff).get(USERS, query))) == expected


@pytest.mark.parametrize(
    "query",
    [{"suspended": "perhaps"}, {"days": "0"}, {"days": "93"}, {"page_size": "101"}],
    ids=["suspended", "days-zero", "days-too-many", "page-size"],
)
def test_bad_queries_are_a_400(staff: User, world: dict[str, Any], query: dict[str, str]) -> None:
    response = _client(staff).get(USERS, query)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_the_list_is_paginated(staff: User, world: dict[str, Any]) -> None:
    body = _client(staff).get(USERS, {"page_size": 2}).json()

    assert body["count"] == 3
    assert [row["username"] for row in body["results"]] == ["other", "owner"]
    assert body["next"] is not None


def _staff_with(other_user: User, *codenames: str) -> APIClient:
    """A staff member (not superuser) holding exactly these permissions of users."""
    member = User.objects.create_user("junior", is_staff=True)
    member.groups.set(other_user.groups.all())  # admitted by the access policy
    member.user_permissions.set(
        Permission.objects.filter(content_type__app_label="auth", codename__in=codenames)
    )
    return _client(member)


@pytest.mark.parametrize(
    ("codenames", "expected"),
    [
        ((), 403),
        (("view_user",), 200),
        (("change_user",), 200),  # change includes view, as in the admin
        (("add_user", "delete_user"), 403),
    ],
    ids=["none", "view", "change", "add-and-delete"],
)
def test_a_staff_member_reads_users_only_with_the_user_view_permission(
    other_user: User, world: dict[str, Any], codenames: tuple[str, ...], expected: int
) -> None:
    response = _staff_with(other_user, *codenames).get(USERS)

    assert response.status_code == expected
    if expected == 403:
        assert response.json() == {
            "detail": "You need the permission 'auth.view_user' for this.",
            "code": "permission_denied",
        }


def test_a_staff_member_with_only_session_permissions_cannot_list_users(
    other_user: User, world: dict[str, Any]
) -> None:
    member = User.objects.create_user("junior", is_staff=True)
    member.groups.set(other_user.groups.all())
    member.user_permissions.set(
        Permission.objects.filter(content_type__app_label="sessions_app", codename="view_session")
    )

    assert _client(member).get(USERS).status_code == 403


def test_users_who_are_not_staff_get_403(other_user: User, world: dict[str, Any]) -> None:
    response = _client(other_user).get(USERS)

    assert (response.status_code, response.json()["code"]) == (403, "permission_denied")


def test_the_list_is_read_only(staff: User, world: dict[str, Any]) -> None:
    response = _client(staff).post(USERS, {}, format="json")

    assert response.status_code == 405

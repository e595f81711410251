"""The reads the ORM writes once (portal/prepared.py) answer as the ORM's own queries did, and
keep nothing: a revoked token, a deactivated account, a suspension or a group removal counts on
the very next request."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts_app.policy import access_refusal
from portal.prepared import PreparedRead
from portal.tokens import token_issue, token_resolve, token_revoke, tokens_live_for
from sessions_app.models import Environment, EnvironmentOption
from sessions_app.selectors import environments_launchable
from sessions_app.serializers import EnvironmentSerializer
from suspension_app.services import suspension_impose, suspension_lift

pytestmark = pytest.mark.django_db

SESSION = "/api/v1/session/"


def _bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_a_revoked_token_and_a_deactivated_account_are_refused_on_the_next_request(
    owner: User,
) -> None:
    token = token_issue(user=owner)
    client = _bearer(token)
    assert client.get("/api/v1/environments/").status_code == 200
    resolved = token_resolve(token)
    assert resolved is not None and resolved.user == owner

    token_revoke(tokens_live_for(owner).get())
    assert client.get("/api/v1/environments/").status_code == 401
    assert token_resolve(token) is None

    fresh = _bearer(token_issue(user=owner))
    owner.is_active = False
    owner.save()
    assert fresh.get("/api/v1/environments/").status_code == 401


def test_a_suspension_and_a_lift_count_on_the_next_request(owner: User, staff: User) -> None:
    client = _bearer(token_issue(user=owner))
    assert client.get("/api/v1/environments/").status_code == 200

    suspension = suspension_impose(user=owner, reason="Mining.", imposed_by=staff)
    refused = client.get("/api/v1/environments/")
    assert refused.status_code == 403
    assert refused.json()["code"] == "suspended"

    suspension_lift(suspension=suspension, lifted_by=staff, note="Checked.")
    assert client.get("/api/v1/environments/").status_code == 200


def test_leaving_the_access_group_counts_on_the_next_request(owner: User) -> None:
    client = _bearer(token_issue(user=owner))
    assert access_refusal(owner) is None
    owner.groups.remove(Group.objects.get(name=settings.ACCESS_GROUP))
    refused = client.get("/api/v1/environments/")
    assert refused.status_code == 403
    assert refused.json()["code"] == "access_denied"


def test_the_policy_is_one_query_and_staff_are_always_admitted(owner: User, staff: User) -> None:
    with CaptureQueriesContext(connection) as queries:
        assert access_refusal(owner) is None
    assert len(queries.captured_queries) == 1
    staff.groups.clear()
    assert access_refusal(staff) is None


def test_a_prepared_read_must_use_every_parameter_it_names(db: None) -> None:
    read = PreparedRead(lambda param: Group.objects.values_list("name"), "unused")
    with pytest.raises(ValueError, match="unused"):
        read.rows(unused=1)


def _environment(slug: str, order: int, **extra: Any) -> Environment:
    return Environment.objects.create(
        slug=slug, name=slug.title(), use_case="-", memory_mb=1024, cpus=1,
        max_duration_minutes=60, order=order, **extra,
    )  # fmt: skip


def test_the_launchable_list_is_the_orm_s_with_its_options(owner: User, other_user: User) -> None:
    # Given an open environment with options, one for another group, one for the owner's
    # group, and a disabled one (and none else)
    Environment.objects.update(enabled=False)
    open_one = _environment("open", 3)
    for order, name in ((2, "b"), (1, "a"), (1, "c")):
        EnvironmentOption.objects.create(
            environment=open_one, name=name, label=name, kind="boolean", default="false",
            order=order,
        )  # fmt: skip
    mine = Group.objects.create(name="mine")
    owner.groups.add(mine)
    _environment("theirs", 1).allowed_groups.add(Group.objects.create(name="theirs"))
    _environment("mine", 2).allowed_groups.add(mine)
    _environment("off", 0, enabled=False)

    # When the owner's list is read (as the API reads it) and through the ORM (a filter chained)
    read = EnvironmentSerializer(environments_launchable(owner), many=True).data
    orm = EnvironmentSerializer(environments_launchable(owner).filter(), many=True).data

    # then they are the same, in the same order, options in theirs
    assert read == orm
    assert [env["slug"] for env in read] == ["mine", "open"]
    assert [option["name"] for option in read[1]["options"]] == ["a", "c", "b"]
    # and counting or asking about it is the ORM's own
    assert environments_launchable(owner).count() == 2
    assert not environments_launchable(other_user).filter(slug="mine").exists()

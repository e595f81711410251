"""REST API for staff automation: list, suspend and reinstate users."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from sessions_app.models import Environment
from suspension_app.models import Suspension
from suspension_app.services import suspension_impose, suspension_lift
from tests.conftest import login_verified
from tests.suspension_app.conftest import make_session, suspend_by_rule

pytestmark = pytest.mark.django_db

LIST = "/api/v1/admin/suspensions/"


def _lift_url(suspension: Suspension | int) -> str:
    pk = suspension if isinstance(suspension, int) else suspension.pk
    return f"{LIST}{pk}/lift/"


def test_staff_list_suspensions_newest_first_with_their_record(
    staff_api: APIClient, owner: User, other_user: User, staff: User
) -> None:
    # Given a lifted suspension of the owner, then one in force of the other user
    lifted = suspend_by_rule(owner, "Quota.")
    suspension_lift(suspension=lifted, lifted_by=staff, note="Sensor fault.")
    active = suspension_impose(user=other_user, reason="Spam.", imposed_by=staff)
    # When
    response = staff_api.get(LIST)
    # then
    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    first, second = body["results"]
    assert (first["id"], first["user"], first["imposed_by"], first["rule"]) == (
        active.pk,
        "other",
        "staff",
        "",
    )
    assert (first["active"], first["lifted_at"], first["lifted_by"]) == (True, None, None)
    assert (second["id"], second["imposed_by"], second["rule"]) == (lifted.pk, None, "test_rule")
    assert (second["active"], second["lifted_by"]) == (False, "staff")
    assert second["investigation_note"] == "Sensor fault."


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("?active=1", ["other"]),
        ("?active=true", ["other"]),
        ("?active=0", ["owner"]),
        ("?user=owner", ["owner"]),
        ("?user=owner&active=1", []),
        ("?user=nobody", []),
    ],
)
def test_the_list_filters_by_status_and_user(
    staff_api: APIClient,
    owner: User,
    other_user: User,
    staff: User,
    query: str,
    expected: list[str],
) -> None:
    lifted = suspend_by_rule(owner)
    suspension_lift(suspension=lifted, lifted_by=staff, note="Checked.")
    suspend_by_rule(other_user)

    response = staff_api.get(LIST + query)

    assert [item["user"] for item in response.json()["results"]] == expected


def test_a_bad_filter_is_a_400(staff_api: APIClient) -> None:
    response = staff_api.get(LIST + "?active=maybe")

    assert response.status_code == 400
    assert response.json()["detail"].startswith("active:")


def test_the_list_is_paginated(
    staff_api: APIClient, staff: User, django_user_model: type[User]
) -> None:
    # Given one more suspension than a page holds (PAGE_SIZE = 20)
    for index in range(21):
        user = django_user_model.objects.create_user(f"user{index}")
        suspend_by_rule(user)
    # When
    first = staff_api.get(LIST).json()
    second = staff_api.get(first["next"]).json()
    # then
    assert (first["count"], len(first["results"]), len(second["results"])) == (21, 20, 1)


def test_staff_suspend_a_user_who_is_told_and_whose_session_stops(
    staff_api: APIClient,
    owner: User,
    environment: Environment,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # Given a running session
    session = make_session(owner, environment, "running")
    # When
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(
            LIST,
            {"user": "owner", "reason": "Port scans.", "evidence": {"ids": ["IDS-7"]}},
            format="json",
        )
    # then
    assert response.status_code == 201
    body = response.json()
    suspension = Suspension.objects.get()
    assert body["id"] == suspension.pk
    assert (body["user"], body["imposed_by"], body["rule"], body["active"]) == (
        "owner",
        "staff",
        "",
        True,
    )
    assert (body["reason"], body["evidence"]) == ("Port scans.", {"ids": ["IDS-7"]})
    session.refresh_from_db()
    assert (session.state, session.reason) == ("stopping", "suspended")
    assert len(mailoutbox) == 1


def test_suspending_a_suspended_user_answers_200_with_the_suspension_in_force(
    staff_api: APIClient,
    owner: User,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    existing = suspend_by_rule(owner, "Quota.")

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(LIST, {"user": "owner", "reason": "Again."}, format="json")

    assert response.status_code == 200
    assert (response.json()["id"], response.json()["reason"]) == (existing.pk, "Quota.")
    assert Suspension.objects.count() == 1
    assert mailoutbox == []


@pytest.mark.parametrize(
    ("body", "code", "detail"),
    [
        ({"user": "nobody", "reason": "Why."}, "unknown_user", "There is no user 'nobody'."),
        ({"user": "owner", "reason": ""}, "invalid", "reason: This field may not be blank."),
        ({"user": "owner", "reason": "   "}, "invalid", "reason: This field may not be blank."),
        ({"user": "owner"}, "invalid", "reason: This field is required."),
        ({"reason": "Why."}, "invalid", "user: This field is required."),
        ({"user": "owner", "reason": "Why.", "evidence": [1]}, "invalid", "evidence: Expected"),
        ({"user": "staff", "reason": "Why."}, "own_suspension", "You cannot suspend yourself."),
    ],
)
def test_a_bad_suspension_request_is_a_400_and_creates_nothing(
    staff_api: APIClient,
    owner: User,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
    body: dict[str, Any],
    code: str,
    detail: str,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(LIST, body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == code
    assert response.json()["detail"].startswith(detail)
    assert not Suspension.objects.exists()
    assert mailoutbox == []


def test_a_malformed_body_is_a_400(staff_api: APIClient, owner: User) -> None:
    response = staff_api.post(LIST, "{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"
    assert not Suspension.objects.exists()


def test_staff_reinstate_a_user_with_a_note(
    staff_api: APIClient,
    owner: User,
    mailoutbox: list[Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    suspension = suspend_by_rule(owner)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_api.post(_lift_url(suspension), {"note": "False positive."}, format="json")

    assert response.status_code == 200
    body = response.json()
    assert (body["active"], body["lifted_by"], body["investigation_note"]) == (
        False,
        "staff",
        "False positive.",
    )
    assert body["lifted_at"] is not None
    assert len(mailoutbox) == 1 and "False positive" not in mailoutbox[0].body


@pytest.mark.parametrize("body", [{"note": ""}, {"note": "  \n "}])
def test_reinstating_without_a_note_is_a_400_and_changes_nothing(
    staff_api: APIClient, owner: User, body: dict[str, str]
) -> None:
    suspension = suspend_by_rule(owner)

    response = staff_api.post(_lift_url(suspension), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "note_required"
    assert "investigation note" in response.json()["detail"]
    suspension.refresh_from_db()
    assert suspension.is_active


def test_reinstating_without_the_note_field_is_a_400(staff_api: APIClient, owner: User) -> None:
    suspension = suspend_by_rule(owner)

    response = staff_api.post(_lift_url(suspension), {}, format="json")

    assert response.status_code == 400
    assert response.json()["detail"] == "note: This field is required."
    suspension.refresh_from_db()
    assert suspension.is_active


def test_reinstating_twice_is_a_409(staff_api: APIClient, owner: User, staff: User) -> None:
    suspension = suspend_by_rule(owner)
    suspension_lift(suspension=suspension, lifted_by=staff, note="First.")

    response = staff_api.post(_lift_url(suspension), {"note": "Second."}, format="json")

    assert response.status_code == 409
    assert response.json()["code"] == "already_lifted"
    suspension.refresh_from_db()
    assert suspension.investigation_note == "First."


def test_reinstating_an_unknown_suspension_is_a_404(staff_api: APIClient) -> None:
    response = staff_api.post(_lift_url(999999), {"note": "Fine."}, format="json")

    assert response.status_code == 404
    assert response.json()["code"] == "suspension_not_found"


def test_users_who_are_not_staff_get_403_and_change_nothing(
    api: APIClient, other_user: User
) -> None:
    # Given: ``api`` is signed in as the owner, who is not staff
    suspension = suspend_by_rule(other_user)
    # When
    responses = [
        api.get(LIST),
        api.post(LIST, {"user": "other", "reason": "Mine."}, format="json"),
        api.post(_lift_url(suspension), {"note": "Let them in."}, format="json"),
    ]
    # then
    assert [response.status_code for response in responses] == [403, 403, 403]
    assert all(response.json()["detail"] for response in responses)
    suspension.refresh_from_db()
    assert suspension.is_active
    assert Suspension.objects.count() == 1


def test_anonymous_callers_are_refused(db: None) -> None:
    response = APIClient().get(LIST)

    assert response.status_code in (401, 403)


def test_the_schema_documents_the_staff_endpoints(staff_api: APIClient) -> None:
    schema = staff_api.get("/api/v1/schema/", {"format": "json"}).json()

    assert set(schema["paths"][LIST]) >= {"get", "post"}
    assert set(schema["paths"]["/api/v1/admin/suspensions/{id}/lift/"]) >= {"post"}
    post = schema["paths"][LIST]["post"]
    assert set(post["responses"]) >= {"200", "201", "400", "403"}
    parameters = {parameter["name"] for parameter in schema["paths"][LIST]["get"]["parameters"]}
    assert {"active", "user", "page"} <= parameters


def test_staff_cannot_suspend_a_colleague_who_holds_more_than_they_do(owner: User) -> None:
    # Given a clerk who may suspend (only that), and a colleague who may also read sessions
    def staff_holding(username: str, *codenames: str) -> User:
        user = User.objects.create_user(username, is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
        return user

    clerk = staff_holding("clerk", "add_suspension", "view_suspension")
    colleague = staff_holding("colleague", "view_session")
    client = APIClient()
    login_verified(client, clerk)

    # When the clerk suspends the colleague, then an ordinary user
    refused = client.post(LIST, {"user": "colleague", "reason": "Locked out."}, format="json")
    allowed = client.post(LIST, {"user": owner.username, "reason": "Spam."}, format="json")

    # Then only the ordinary user is suspended
    assert (refused.status_code, refused.json()["code"]) == (403, "permission_denied")
    assert allowed.status_code == 201
    assert not Suspension.objects.filter(user=colleague).exists()

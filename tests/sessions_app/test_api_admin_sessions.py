"""The staff API of sessions and usage (``/api/v1/admin/sessions/``, ``/api/v1/admin/usage/``):
staff list everyone's sessions with filters, stop one, read the usage figures; a staff member
gets exactly what their session permissions say, and never a server's address or token."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.usage import usage_range, usage_report
from tests.conftest import login_verified
from tests.sessions_app.pinned import pinned_state

pytestmark = pytest.mark.django_db

SESSIONS = "/api/v1/admin/sessions/"
USAGE = "/api/v1/admin/usage/"
NOW = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
State = Session.State
Reason = Session.Reason


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
def staff_api(staff: User) -> APIClient:
    return _client(staff)


@pytest.fixture
def large(db: None) -> Environment:
    return Environment.objects.create(
        slug="large", name="Large", use_case="big jobs", memory_mb=8192, cpus=4,
        max_duration_minutes=600,
    )  # fmt: skip


def _at(hours_ago: float) -> datetime:
    return NOW - timedelta(hours=hours_ago)


@pytest.fixture
def sessions(
    owner: User, other_user: User, environment: Environment, large: Environment
) -> dict[str, Session]:
    """The owner's running session (its server's token in its state), an ended and a failed
    one; the other user's queued session and a stopped one of the large environment."""
    made = {
        "running": Session.objects.create(
            user=owner, environment=environment, state=State.RUNNING, created_at=_at(1),
            started_at=_at(1), expires_at=_at(-4), url="http://127.0.0.1:1/user/owner/lab",
            spawner_state=pinned_state("owners-secret-token"),
        ),
        "failed": Session.objects.create(
            user=owner, environment=environment, state=State.FAILED, created_at=_at(3),
            ended_at=_at(3), reason=Reason.BACKEND_ERROR, message="The server could not start.",
        ),
        "expired": Session.objects.create(
            user=owner, environment=environment, state=State.EXPIRED, created_at=_at(10),
            started_at=_at(10), expires_at=_at(5), ended_at=_at(5), reason=Reason.TIME_LIMIT,
        ),
        "queued": Session.objects.create(
            user=other_user, environment=large, state=State.QUEUED, created_at=_at(0.5)
        ),
        "other_stopped": Session.objects.create(
            user=other_user, environment=large, state=State.STOPPED, created_at=_at(20),
            started_at=_at(20), ended_at=_at(19), reason=Reason.USER_STOPPED,
        ),
    }  # fmt: skip
    return made


def _ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


# --- The list -----------------------------------------------------------------------------------


def test_staff_list_everyones_sessions_newest_first_without_addresses_or_tokens(
    staff_api: APIClient, sessions: dict[str, Session]
) -> None:
    # when
    response = staff_api.get(SESSIONS)
    # then
    order = ["queued", "running", "failed", "expired", "other_stopped"]
    assert _ids(response) == [str(sessions[name].pk) for name in order]
    running = response.json()["results"][1]
    assert running == {
        "id": str(sessions["running"].pk),
        "user": "owner",
        "environment": "ecmwf-dss",
        "state": "running",
        "reason": "",
        "message": "",
        "options": {},
        "created_at": "2025-03-03T08:00:00Z",
        "admitted_at": None,
        "started_at": "2025-03-03T08:00:00Z",
        "expires_at": "2025-03-03T13:00:00Z",
        "ended_at": None,
    }
    assert "owners-secret-token" not in response.content.decode()
    assert "127.0.0.1:1" not in response.content.decode()


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"state": "failed"}, ["failed"]),
        ({"user": "other"}, ["queued", "other_stopped"]),
        ({"environment": "large"}, ["queued", "other_stopped"]),
        ({"active": "true"}, ["queued", "running"]),
        ({"active": "false"}, ["failed", "expired", "other_stopped"]),
        ({"user": "owner", "active": "false", "state": "expired"}, ["expired"]),
        ({"user": "nobody"}, []),
    ],
    ids=["state", "user", "environment", "active", "ended", "combined", "unknown-user"],
)
def test_filters_narrow_the_list(
    staff_api: APIClient,
    sessions: dict[str, Session],
    query: dict[str, str],
    expected: list[str],
) -> None:
    assert _ids(staff_api.get(SESSIONS, query)) == [str(sessions[name].pk) for name in expected]


@pytest.mark.parametrize(
    "query",
    [{"state": "sleeping"}, {"active": "maybe"}, {"page_size": "500"}, {"page_size": "0"}],
    ids=["state", "active", "page-size-large", "page-size-zero"],
)
def test_bad_filters_are_a_400(
    staff_api: APIClient, sessions: dict[str, Session], query: dict[str, str]
) -> None:
    response = staff_api.get(SESSIONS, query)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"


def test_the_list_is_paginated_with_page_size(
    staff_api: APIClient, sessions: dict[str, Session]
) -> None:
    first = staff_api.get(SESSIONS, {"page_size": 2}).json()
    last = staff_api.get(SESSIONS, {"page_size": 2, "page": 3}).json()

    assert (first["count"], len(first["results"]), len(last["results"])) == (5, 2, 1)
    assert last["next"] is None


# --- Stopping one -------------------------------------------------------------------------------


def test_staff_stop_a_running_session_and_it_is_recorded(
    staff_api: APIClient,
    staff: User,
    sessions: dict[str, Session],
    django_capture_on_commit_callbacks: Any,
) -> None:
    running = sessions["running"]
    # when (the stop task is sent once this commits; no worker runs here)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_api.post(f"{SESSIONS}{running.pk}/stop/")
    # then
    assert response.status_code == 202
    body = response.json()
    assert (body["id"], body["state"], body["reason"]) == (
        str(running.pk),
        "stopping",
        "staff_stopped",
    )
    running.refresh_from_db()
    assert (running.state, running.reason) == (State.STOPPING, Reason.STAFF_STOPPED)
    assert len(callbacks) >= 1  # the stop task
    entry = LogEntry.objects.get(object_id=str(running.pk))
    assert (entry.user_id, entry.get_change_message()) == (staff.pk, "Stopped by staff.")


def test_staff_stop_a_queued_session_at_once(
    staff_api: APIClient, sessions: dict[str, Session]
) -> None:
    response = staff_api.post(f"{SESSIONS}{sessions['queued'].pk}/stop/")

    assert response.status_code == 202
    assert (response.json()["state"], response.json()["ended_at"]) == (
        "stopped",
        "2025-03-03T09:00:00Z",
    )


def test_a_session_already_stopping_answers_202_and_is_not_recorded_twice(
    staff_api: APIClient, sessions: dict[str, Session]
) -> None:
    running = sessions["running"]
    Session.objects.filter(pk=running.pk).update(state=State.STOPPING, reason=Reason.USER_STOPPED)

    response = staff_api.post(f"{SESSIONS}{running.pk}/stop/")

    assert response.status_code == 202
    assert (response.json()["state"], response.json()["reason"]) == ("stopping", "user_stopped")
    assert not LogEntry.objects.filter(object_id=str(running.pk)).exists()


def test_stopping_an_ended_session_is_a_409_and_an_unknown_one_a_404(
    staff_api: APIClient, sessions: dict[str, Session]
) -> None:
    ended = staff_api.post(f"{SESSIONS}{sessions['failed'].pk}/stop/")
    unknown = staff_api.post(f"{SESSIONS}{uuid.uuid4()}/stop/")

    assert (ended.status_code, ended.json()["code"]) == (409, "session_ended")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "session_not_found")
    assert Session.objects.get(pk=sessions["failed"].pk).reason == Reason.BACKEND_ERROR


# --- Usage --------------------------------------------------------------------------------------


def test_usage_is_the_admin_pages_figures_as_json(
    staff_api: APIClient, sessions: dict[str, Session], environment: Environment
) -> None:
    # when
    response = staff_api.get(USAGE, {"days": 7})
    # then the same figures as the usage page's report
    assert response.status_code == 200
    body = response.json()
    report = usage_report(usage_range(NOW, 7))
    assert (body["first"], body["last"]) == ("2025-02-25", "2025-03-03")
    assert body["environments"] == report.environments == ["ecmwf-dss", "large"]
    assert len(body["rows"]) == 7 * 2
    today = {row["environment"]: row for row in body["rows"] if row["day"] == "2025-03-03"}
    # today: the running session's hour since 08:00, the expired one's 4 hours after midnight
    cpus = environment.cpus
    assert today["ecmwf-dss"]["cpu_hours"] == pytest.approx(5 * cpus)
    assert today["ecmwf-dss"]["sessions_started"] == 1
    assert today["large"] == {
        "day": "2025-03-03",
        "environment": "large",
        "sessions_started": 0,
        "cpu_hours": 0.0,
        "memory_gb_hours": 0.0,
    }
    assert body["failures"] == [
        {"reason": "backend_error", "reason_label": "the server could not be started", "count": 1}
    ]
    # the owner: 6 hours of their environment; the other user: 1 hour of the large one
    assert [(u["username"], u["cpu_hours"]) for u in body["top_users"]] == [
        ("owner", pytest.approx(6 * cpus)),
        ("other", pytest.approx(4.0)),
    ]
    assert body["storage"] == {"accounts_measured": 0, "private_bytes": 0, "scratch_bytes": 0}


@pytest.mark.parametrize("days", ["0", "93", "x"])
def test_usage_days_out_of_range_are_a_400(staff_api: APIClient, days: str) -> None:
    response = staff_api.get(USAGE, {"days": days})

    assert response.status_code == 400
    assert response.json()["detail"].startswith("days: ")


def test_usage_defaults_to_thirty_days(staff_api: APIClient, environment: Environment) -> None:
    body = staff_api.get(USAGE).json()

    assert (body["first"], body["last"]) == ("2025-02-02", "2025-03-03")


# --- Who may ------------------------------------------------------------------------------------


def _permission(codename: str) -> Permission:
    # Not django.contrib.sessions' permission of the same name.
    return Permission.objects.get(content_type__app_label="sessions_app", codename=codename)


def _staff_with(other_user: User, *codenames: str) -> APIClient:
    """A staff member (not superuser) holding exactly these session permissions."""
    member = User.objects.create_user("junior", is_staff=True)
    member.groups.set(other_user.groups.all())  # admitted by the access policy
    member.user_permissions.set([_permission(codename) for codename in codenames])
    return _client(member)


def _answers(client: APIClient, sessions: dict[str, Session]) -> dict[str, int]:
    return {
        "list": client.get(SESSIONS).status_code,
        "usage": client.get(USAGE).status_code,
        "stop": client.post(f"{SESSIONS}{sessions['running'].pk}/stop/").status_code,
    }


@pytest.mark.parametrize(
    ("codenames", "expected"),
    [
        ((), {"list": 403, "usage": 403, "stop": 403}),
        (("view_session",), {"list": 200, "usage": 200, "stop": 403}),
        # change includes view, as in the admin
        (("change_session",), {"list": 200, "usage": 200, "stop": 202}),
        (("delete_session", "add_session"), {"list": 403, "usage": 403, "stop": 403}),
    ],
    ids=["none", "view", "change", "delete-and-add"],
)
def test_a_staff_member_gets_exactly_what_their_session_permissions_say(
    other_user: User,
    sessions: dict[str, Session],
    codenames: tuple[str, ...],
    expected: dict[str, int],
) -> None:
    # when
    answers = _answers(_staff_with(other_user, *codenames), sessions)
    # then
    assert answers == expected
    if expected["stop"] == 403:
        assert Session.objects.get(pk=sessions["running"].pk).state == State.RUNNING


def test_the_refusal_names_the_permission_needed(
    other_user: User, sessions: dict[str, Session]
) -> None:
    response = _staff_with(other_user, "view_session").post(
        f"{SESSIONS}{sessions['running'].pk}/stop/"
    )

    assert response.json() == {
        "detail": "You need the permission 'sessions_app.change_session' for this.",
        "code": "permission_denied",
    }


def test_users_who_are_not_staff_get_403_and_stop_nothing(
    api: APIClient, sessions: dict[str, Session]
) -> None:
    answers = _answers(api, sessions)

    assert answers == {"list": 403, "usage": 403, "stop": 403}
    assert Session.objects.get(pk=sessions["running"].pk).state == State.RUNNING


def test_the_schema_documents_the_staff_session_endpoints(staff_api: APIClient) -> None:
    schema = json.loads(staff_api.get("/api/v1/schema/", {"format": "json"}).content)
    paths = schema["paths"]

    listed = paths["/api/v1/admin/sessions/"]["get"]
    assert {p["name"] for p in listed["parameters"]} >= {
        "state", "active", "user", "environment", "page", "page_size",
    }  # fmt: skip
    assert set(listed["responses"]) >= {"200", "400", "403", "404"}
    stop = paths["/api/v1/admin/sessions/{session_id}/stop/"]["post"]
    assert set(stop["responses"]) >= {"202", "403", "404", "409"}
    usage = paths["/api/v1/admin/usage/"]["get"]
    assert set(usage["responses"]) >= {"200", "400", "403"}
    properties = schema["components"]["schemas"]["AdminSession"]["properties"]
    assert not {"url", "spawner_state"} & set(properties)

"""The staff API of the queue (``/api/v1/admin/queue/``): staff read it in the policy's order,
move a waiting session and remove it; bad requests are JSON errors that change nothing, and
only staff with the session permissions get in."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session
from sessions_app.selectors import admission_policy, queue_entries, session_queue_estimate
from tests.conftest import login_verified
from tests.sessions_app.queue_world import NOW, _fast_passwords, _frozen, large, queue

__all__ = ["_fast_passwords", "_frozen", "large", "queue"]  # fixtures, by name

pytestmark = pytest.mark.django_db

QUEUE = "/api/v1/admin/queue/"


def _entry_url(session: Session) -> str:
    return f"{QUEUE}{session.pk}/"


def _move_url(session: Session) -> str:
    return f"{QUEUE}{session.pk}/move/"


@pytest.fixture
def staff_api(staff: User) -> APIClient:
    client = APIClient()
    login_verified(client, staff)
    return client


def _order(client: APIClient) -> list[str]:
    response = client.get(QUEUE)
    assert response.status_code == 200
    return [entry["user"] for entry in response.json()]


def _state(queue: dict[str, Session]) -> dict[str, tuple[str, int]]:
    """What a refused request must leave as it was: each session's state and boost."""
    return {
        name: (session.state, session.queue_boost)
        for name, session in ((n, Session.objects.get(pk=s.pk)) for n, s in queue.items())
    }


def test_the_queue_is_listed_in_the_policys_order_with_its_figures(
    staff_api: APIClient, queue: dict[str, Session]
) -> None:
    # when
    response = staff_api.get(QUEUE)

    # then small sessions first despite the large one's longer wait, as the policy orders them
    assert response.status_code == 200
    listed = response.json()
    policy_order = [entry.key for entry in admission_policy().order(queue_entries(), NOW)]
    assert [entry["id"] for entry in listed] == policy_order
    assert [entry["user"] for entry in listed] == ["ann", "ben", "big"]
    ann = listed[0]
    assert ann == {
        "id": str(queue["ann"].pk),
        "user": "ann",
        "environment": "ecmwf-dss",
        "position": 1,
        "queued_at": "2025-03-03T08:55:00Z",
        "waited_seconds": 300,
        "effective_priority": 10.5,  # priority 10 + 5 minutes / 10 minutes per step
        "boost": 0,
        "estimated_wait_seconds": 600,  # run1 reaches its 300-minute limit in 10 minutes
    }
    assert [entry["position"] for entry in listed] == [1, 2, 3]
    # the same estimates as the owners see on their session pages
    for entry in listed:
        estimate = session_queue_estimate(Session.objects.get(pk=entry["id"]))
        assert estimate is not None and estimate[1] is not None
        assert (entry["position"], entry["estimated_wait_seconds"]) == (
            estimate[0],
            round(estimate[1]),
        )


def test_an_empty_queue_is_an_empty_list(staff_api: APIClient, environment: Environment) -> None:
    assert staff_api.get(QUEUE).json() == []


def test_moving_an_entry_up_changes_the_order_and_asks_for_admission(
    staff_api: APIClient,
    staff: User,
    queue: dict[str, Session],
    django_capture_on_commit_callbacks: Any,
) -> None:
    # when staff move ben up one step (worth 10 minutes of waiting: more than ann's lead)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = staff_api.post(_move_url(queue["ben"]), {"steps": 1}, format="json")

    # then the answer is the queue in its new order, and the boost is stored
    assert response.status_code == 200
    assert [entry["user"] for entry in response.json()] == ["ben", "ann", "big"]
    assert response.json()[0]["boost"] == 1
    assert response.json()[0]["effective_priority"] == pytest.approx(11.3)
    assert Session.objects.get(pk=queue["ben"].pk).queue_boost == 1
    assert len(callbacks) == 1  # an admission pass, once this commits
    # and the session's history says who moved it
    entry = LogEntry.objects.get(object_id=str(queue["ben"].pk))
    assert entry.user_id == staff.pk
    assert "Moved up in the queue by 1" in entry.get_change_message()


def test_moving_an_entry_down_can_put_it_last(
    staff_api: APIClient, queue: dict[str, Session]
) -> None:
    response = staff_api.post(_move_url(queue["ann"]), {"steps": -10}, format="json")

    assert response.status_code == 200
    assert _order(staff_api) == ["ben", "big", "ann"]
    assert Session.objects.get(pk=queue["ann"].pk).queue_boost == -10


def test_removing_an_entry_ends_it_and_those_behind_move_up(
    staff_api: APIClient, staff: User, queue: dict[str, Session]
) -> None:
    # when
    response = staff_api.delete(_entry_url(queue["ann"]))

    # then it ended as stopped by staff, and the others moved up a place
    assert response.status_code == 204
    ann = Session.objects.get(pk=queue["ann"].pk)
    assert (ann.state, ann.reason) == (Session.State.STOPPED, Session.Reason.STAFF_STOPPED)
    assert ann.ended_at == NOW
    listed = staff_api.get(QUEUE).json()
    assert [(e["user"], e["position"]) for e in listed] == [("ben", 1), ("big", 2)]
    assert LogEntry.objects.get(object_id=str(ann.pk)).user_id == staff.pk


@pytest.mark.parametrize(
    "body",
    [{"steps": 0}, {"steps": 11}, {"steps": -11}, {"steps": "x"}, {"steps": 1.5}, {}],
    ids=["zero", "eleven", "minus-eleven", "text", "fraction", "missing"],
)
def test_bad_steps_are_a_400_that_changes_nothing(
    staff_api: APIClient, queue: dict[str, Session], body: dict[str, Any]
) -> None:
    before = _state(queue)

    response = staff_api.post(_move_url(queue["ben"]), body, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["detail"].startswith("steps: ")
    assert _state(queue) == before
    assert _order(staff_api) == ["ann", "ben", "big"]


def test_a_boost_beyond_the_limit_is_refused(
    staff_api: APIClient, queue: dict[str, Session]
) -> None:
    Session.objects.filter(pk=queue["ben"].pk).update(queue_boost=95)

    response = staff_api.post(_move_url(queue["ben"]), {"steps": 10}, format="json")

    assert response.status_code == 400
    assert response.json()["code"] == "boost_limit"
    assert Session.objects.get(pk=queue["ben"].pk).queue_boost == 95


def test_an_unknown_session_is_a_404_for_move_and_remove(
    staff_api: APIClient, queue: dict[str, Session]
) -> None:
    before = _state(queue)
    unknown = f"{QUEUE}{uuid.uuid4()}/"

    moved = staff_api.post(f"{unknown}move/", {"steps": 1}, format="json")
    removed = staff_api.delete(unknown)

    for response in (moved, removed):
        assert response.status_code == 404
        assert response.json()["code"] == "not_queued"
        assert response.json()["detail"]
    assert _state(queue) == before


@pytest.mark.parametrize("admitted", [False, True], ids=["running", "admitted"])
def test_a_session_not_waiting_is_a_404_and_stays_as_it_was(
    staff_api: APIClient, queue: dict[str, Session], environment: Environment, admitted: bool
) -> None:
    # given a running session, or one admitted and about to start (no longer in the queue)
    if admitted:
        session = queue["ann"]
        Session.objects.filter(pk=session.pk).update(admitted_at=NOW)
    else:
        session = Session.objects.filter(state=Session.State.RUNNING).earliest("created_at")
    state = Session.objects.filter(pk=session.pk).values_list("state", "queue_boost").get()

    moved = staff_api.post(_move_url(session), {"steps": 1}, format="json")
    removed = staff_api.delete(_entry_url(session))

    assert [moved.status_code, removed.status_code] == [404, 404]
    assert {moved.json()["code"], removed.json()["code"]} == {"not_queued"}
    assert Session.objects.filter(pk=session.pk).values_list("state", "queue_boost").get() == state


def test_users_who_are_not_staff_get_403_and_change_nothing(
    api: APIClient, queue: dict[str, Session]
) -> None:
    before = _state(queue)

    answers = [
        api.get(QUEUE),
        api.post(_move_url(queue["ben"]), {"steps": 1}, format="json"),
        api.delete(_entry_url(queue["ann"])),
    ]

    assert [r.status_code for r in answers] == [403, 403, 403]
    assert {r.json()["code"] for r in answers} == {"permission_denied"}
    assert _state(queue) == before


@pytest.fixture
def junior(other_user: User) -> User:
    """Staff, without any of the session permissions."""
    other_user.is_staff = True
    other_user.save()
    return other_user


def _permission(codename: str) -> Permission:
    # Not django.contrib.sessions' permission of the same name.
    return Permission.objects.get(content_type__app_label="sessions_app", codename=codename)


def _client(user: User) -> APIClient:
    client = APIClient()
    login_verified(client, user)
    return client


def test_staff_need_the_session_permissions(junior: User, queue: dict[str, Session]) -> None:
    before = _state(queue)
    # without any: nothing
    assert _client(junior).get(QUEUE).status_code == 403
    # view: read, but neither move nor remove
    junior.user_permissions.add(_permission("view_session"))
    client = _client(User.objects.get(pk=junior.pk))
    assert client.get(QUEUE).status_code == 200
    moved = client.post(_move_url(queue["ben"]), {"steps": 1}, format="json")
    removed = client.delete(_entry_url(queue["ann"]))
    assert [moved.status_code, removed.status_code] == [403, 403]
    assert "sessions_app.change_session" in moved.json()["detail"]
    assert _state(queue) == before
    # change: move
    junior.user_permissions.add(_permission("change_session"))
    client = _client(User.objects.get(pk=junior.pk))
    assert client.post(_move_url(queue["ben"]), {"steps": 1}, format="json").status_code == 200


def test_the_schema_documents_the_queue_endpoints(staff_api: APIClient) -> None:
    schema = staff_api.get("/api/v1/schema/", {"format": "json"}).json()
    paths = schema["paths"]

    assert set(paths["/api/v1/admin/queue/"]) >= {"get"}
    assert set(paths["/api/v1/admin/queue/{session_id}/"]) >= {"delete"}
    move = paths["/api/v1/admin/queue/{session_id}/move/"]["post"]
    assert set(move["responses"]) >= {"200", "400", "403", "404"}
    body_ref = move["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][body_ref.rsplit("/", 1)[1]]
    assert body["required"] == ["steps"]
    assert (body["properties"]["steps"]["minimum"], body["properties"]["steps"]["maximum"]) == (
        -10,
        10,
    )
    assert set(schema["components"]["schemas"]["QueuePlace"]["properties"]) == {
        "id", "user", "environment", "position", "queued_at", "waited_seconds",
        "effective_priority", "boost", "estimated_wait_seconds",
    }  # fmt: skip

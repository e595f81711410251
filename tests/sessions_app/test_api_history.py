"""REST API: the caller's session history, ``GET /api/v1/sessions/``."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from rest_framework.test import APIClient

from sessions_app.models import Environment, Session

URL = "/api/v1/sessions/"
State = Session.State
Reason = Session.Reason


def _ended(
    user: User, environment: Environment, hours_ago: int, state: str, reason: str
) -> Session:
    created = timezone.now() - timedelta(hours=hours_ago)
    return Session.objects.create(
        user=user, environment=environment, state=state, reason=reason, created_at=created,
        ended_at=created + timedelta(minutes=30),
    )  # fmt: skip


def test_history_lists_the_callers_sessions_newest_first_with_state_and_reason(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given
    expired = _ended(owner, environment, 3, State.EXPIRED, Reason.TIME_LIMIT)
    failed = _ended(owner, environment, 2, State.FAILED, Reason.BACKEND_ERROR)
    stopped = _ended(owner, environment, 1, State.STOPPED, Reason.USER_STOPPED)
    active = Session.objects.create(
        user=owner, environment=environment, state=State.QUEUED, created_at=timezone.now()
    )
    # when
    response = api.get(URL)
    # then
    assert response.status_code == 200
    results = response.json()["results"]
    assert [(r["id"], r["state"], r["reason"]) for r in results] == [
        (str(active.id), "queued", ""),
        (str(stopped.id), "stopped", "user_stopped"),
        (str(failed.id), "failed", "backend_error"),
        (str(expired.id), "expired", "time_limit"),
    ]
    assert results[1]["environment"] == "ecmwf-dss"
    assert results[1]["remaining_seconds"] is None
    assert results[1]["url"] is None


def test_history_is_paginated(api: APIClient, owner: User, environment: Environment) -> None:
    # given: one more session than a page holds (PAGE_SIZE = 20)
    for hours_ago in range(21):
        _ended(owner, environment, hours_ago + 1, State.STOPPED, Reason.USER_STOPPED)
    # when
    first = api.get(URL).json()
    second = api.get(first["next"]).json()
    # then
    assert first["count"] == 21
    assert len(first["results"]) == 20
    assert first["previous"] is None
    assert len(second["results"]) == 1
    assert second["next"] is None
    seen = {r["id"] for r in first["results"]} | {r["id"] for r in second["results"]}
    assert len(seen) == 21


def test_history_never_shows_another_users_sessions(
    api: APIClient, owner: User, other_user: User, environment: Environment
) -> None:
    # given
    mine = _ended(owner, environment, 2, State.STOPPED, Reason.USER_STOPPED)
    _ended(other_user, environment, 1, State.STOPPED, Reason.USER_STOPPED)
    # when
    body = api.get(URL).json()
    # then
    assert body["count"] == 1
    assert [r["id"] for r in body["results"]] == [str(mine.id)]


def test_history_is_empty_for_a_new_user(api: APIClient, db: None) -> None:
    body = api.get(URL).json()

    assert body == {"count": 0, "next": None, "previous": None, "results": []}


def test_history_refuses_anonymous_callers(db: None) -> None:
    response = APIClient().get(URL)

    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- page_size and ?state= ----------------------------------------------------------------------


def test_page_size_sets_the_rows_of_a_page(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given
    for hours_ago in range(7):
        _ended(owner, environment, hours_ago + 1, State.STOPPED, Reason.USER_STOPPED)
    # when
    first = api.get(URL, {"page_size": 5}).json()
    second = api.get(first["next"]).json()
    # then the next page keeps the size
    assert (first["count"], len(first["results"])) == (7, 5)
    assert "page_size=5" in first["next"]
    assert len(second["results"]) == 2


def test_page_size_of_a_hundred_is_the_most(
    api: APIClient, owner: User, environment: Environment
) -> None:
    for hours_ago in range(101):
        _ended(owner, environment, hours_ago + 1, State.STOPPED, Reason.USER_STOPPED)

    body = api.get(URL, {"page_size": 100}).json()

    assert (body["count"], len(body["results"])) == (101, 100)


@pytest.mark.parametrize("size", ["0", "101", "-1", "x", "2.5"])
def test_a_page_size_out_of_range_is_a_400(api: APIClient, db: None, size: str) -> None:
    response = api.get(URL, {"page_size": size})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert "page_size" in response.json()["detail"]


def test_a_page_past_the_end_is_a_json_404(api: APIClient, db: None) -> None:
    response = api.get(URL, {"page": 2})

    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_state_keeps_the_sessions_in_that_state(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given
    failed = _ended(owner, environment, 2, State.FAILED, Reason.BACKEND_ERROR)
    _ended(owner, environment, 1, State.STOPPED, Reason.USER_STOPPED)
    # when
    body = api.get(URL, {"state": "failed"}).json()
    # then
    assert body["count"] == 1
    assert [r["id"] for r in body["results"]] == [str(failed.id)]


@pytest.mark.parametrize("state", ["sleeping", "FAILED", "queued,failed"])
def test_an_unknown_state_is_a_400(api: APIClient, db: None, state: str) -> None:
    response = api.get(URL, {"state": state})

    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert response.json()["detail"].startswith("state: ")


# --- one session: GET /api/v1/sessions/<id>/ ----------------------------------------------------


def test_one_session_shows_how_and_why_it_ended(
    api: APIClient, owner: User, environment: Environment
) -> None:
    # given a start that failed
    created = timezone.now() - timedelta(minutes=5)
    failed = Session.objects.create(
        user=owner, environment=environment, state=State.FAILED, reason=Reason.BACKEND_ERROR,
        message="The server could not be started: no such image.", created_at=created,
        ended_at=created + timedelta(minutes=1),
    )  # fmt: skip
    # when
    response = api.get(f"{URL}{failed.id}/")
    # then
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["state"], body["reason"]) == (
        str(failed.id),
        "failed",
        "backend_error",
    )
    assert body["message"] == "The server could not be started: no such image."
    assert body["ended_at"] is not None
    assert body["url"] is None


def test_one_session_is_also_the_active_one(
    api: APIClient, owner: User, environment: Environment
) -> None:
    session = Session.objects.create(
        user=owner, environment=environment, state=State.QUEUED, created_at=timezone.now()
    )

    body = api.get(f"{URL}{session.id}/").json()

    assert (body["state"], body["queue_position"]) == ("queued", 1)
    # The history's answer is the active session's, with how it ended added.
    active = api.get("/api/v1/session/").json()
    assert {name: body[name] for name in active} == active


def test_another_users_session_is_a_404_like_an_unknown_one(
    api: APIClient, other_user: User, environment: Environment
) -> None:
    # given
    theirs = _ended(other_user, environment, 1, State.STOPPED, Reason.USER_STOPPED)
    # when
    answers = [api.get(f"{URL}{theirs.id}/"), api.get(f"{URL}{uuid.uuid4()}/")]
    # then neither tells that the other user's session exists
    assert [r.status_code for r in answers] == [404, 404]
    assert (
        answers[0].json()
        == answers[1].json()
        == {
            "detail": "You have no such session.",
            "code": "session_not_found",
        }
    )


def test_one_session_refuses_anonymous_callers(owner: User, environment: Environment) -> None:
    mine = _ended(owner, environment, 1, State.STOPPED, Reason.USER_STOPPED)

    response = APIClient().get(f"{URL}{mine.id}/")

    assert response.status_code == 401

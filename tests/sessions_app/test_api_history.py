"""REST API: the caller's session history, ``GET /api/v1/sessions/``."""

from __future__ import annotations

from datetime import timedelta

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

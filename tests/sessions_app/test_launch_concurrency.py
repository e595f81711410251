"""One active session per user, also under simultaneous launches (PostgreSQL decides)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from sessions_app.models import Session
from sessions_app.services import LaunchError, LaunchResult, session_launch

pytestmark = pytest.mark.django_db(transaction=True)

LAUNCHES = 30


def test_thirty_simultaneous_launches_by_one_user_give_one_session(
    accepted: Any, environment: Any
) -> None:
    # Given 30 requests from one user that start at the same instant
    start = Barrier(LAUNCHES)

    def launch(_: int) -> LaunchResult:
        start.wait()
        try:
            return session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
        finally:
            connection.close()

    # When they all launch
    with ThreadPoolExecutor(max_workers=LAUNCHES) as pool:
        results = list(pool.map(launch, range(LAUNCHES)))

    # then exactly one session exists, one call created it, and every other call got it back
    assert Session.objects.filter(user=accepted).count() == 1
    assert sum(result.created for result in results) == 1
    assert {result.session.pk for result in results} == {Session.objects.get().pk}


def test_simultaneous_launches_while_the_session_stops_queue_nothing(
    accepted: Any, environment: Any
) -> None:
    # Given the user's session on its way down, and 10 launches at the same instant
    now = timezone.now()
    stopping = Session.objects.create(
        user=accepted, environment=environment, state=Session.State.STOPPING, created_at=now,
        started_at=now, expires_at=now + environment.max_duration,
    )  # fmt: skip
    start = Barrier(10)

    def launch(_: int) -> str:
        start.wait()
        try:
            session_launch(user=accepted, environment_slug="ecmwf-dss", options={})
        except LaunchError as exc:
            return exc.code
        finally:
            connection.close()
        return "launched"

    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(launch, range(10)))

    # then every one is told to wait for the stop, and the stopping session is still the one
    assert codes == ["still_stopping"] * 10
    assert list(Session.objects.filter(user=accepted)) == [stopping]

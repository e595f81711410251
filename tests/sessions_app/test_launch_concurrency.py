"""One active session per user, also under simultaneous launches (PostgreSQL decides)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import pytest
from django.db import connection

from sessions_app.models import Session
from sessions_app.services import LaunchResult, session_launch

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
